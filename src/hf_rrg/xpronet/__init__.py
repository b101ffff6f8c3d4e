"""XProNet's data pipelines (outside `hf_rrg.modeling`): pseudo-label files (§3.2 Eq. 3) and the K-means prototype
initialisation (§3.2 Eq. 4-7) of Wang et al., ECCV 2022. The model itself is
`hf_rrg.modeling.modeling_xpronet.XProNetForConditionalGeneration`.
"""

from .labels import (
    LABEL_FILE_FORMAT,
    LabelFile,
    class_counts,
    make_label_file,
    read_label_file,
    slot_labels,
)
from .prototypes import (
    PROTOTYPE_KEY,
    PrototypeInitResult,
    initialize_prototypes,
    kmeans,
    load_prototype_file,
    load_prototypes_into,
    save_prototype_file,
)

__all__ = [
    "LABEL_FILE_FORMAT",
    "PROTOTYPE_KEY",
    "LabelFile",
    "PrototypeInitResult",
    "class_counts",
    "initialize_prototypes",
    "kmeans",
    "load_prototype_file",
    "load_prototypes_into",
    "make_label_file",
    "read_label_file",
    "save_prototype_file",
    "slot_labels",
]
