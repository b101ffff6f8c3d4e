"""DCRRG (Zhou, Wang, EMNLP 2024): observation labels and descriptions, instance datasets, the four-step recipe
(`pretrain` -> `describe` -> `prompt`), the P-Tuning v2 adapter through PEFT (`DCRRGPeftModel`,
`AutoPeftModelForImageTextToText`), DCCLIP's retrieval/AUROC evaluation and its image classification (Table 3).
The model itself lives in `hf_rrg.modeling` (`DCRRGForConditionalGeneration`).

Names are imported on first use, so that `hf-rrg --help` (which registers `commands`) does not load torch.
"""

from ..modeling.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "observations": ("ObservationRecord", "label_reports", "label_tensor", "label_vectors"),
        "prefix": ("AutoPeftModelForImageTextToText", "DCRRGPeftModel"),  # PEFT is imported only when used
    },
)
