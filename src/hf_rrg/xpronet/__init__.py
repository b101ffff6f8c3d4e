"""XProNet's data pipelines (outside `hf_rrg.modeling`): pseudo-label files (§3.2 Eq. 3) and the K-means prototype
initialisation (§3.2 Eq. 4-7) of Wang et al., ECCV 2022. The model itself is
`hf_rrg.modeling.modeling_xpronet.XProNetForConditionalGeneration`.

Names are imported on first use, so that `hf-rrg --help` (which registers `commands`) does not load torch.
"""

from ..modeling.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "labels": (
            "LABEL_FILE_FORMAT",
            "LabelFile",
            "class_counts",
            "make_label_file",
            "read_label_file",
            "slot_labels",
        ),
        "prototypes": (
            "PROTOTYPE_KEY",
            "PrototypeInitResult",
            "initialize_prototypes",
            "kmeans",
            "load_prototype_file",
            "load_prototypes_into",
            "save_prototype_file",
        ),
    },
)
