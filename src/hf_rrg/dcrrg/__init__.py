"""DCRRG (Zhou, Wang, EMNLP 2024): observation labels and descriptions, instance datasets, the four-step recipe
(`pretrain` -> `describe` -> `prompt`), the P-Tuning v2 adapter through PEFT (`DCRRGPeftModel`,
`AutoPeftModelForImageTextToText`, loaded on first use), DCCLIP's retrieval/AUROC evaluation and its image
classification (Table 3). The model itself lives in `hf_rrg.modeling` (`DCRRGForConditionalGeneration`)."""

from typing import Any

from .observations import ObservationRecord, label_reports, label_tensor, label_vectors

_ADAPTER_NAMES = ("AutoPeftModelForImageTextToText", "DCRRGPeftModel")


def __getattr__(name: str) -> Any:
    if name in _ADAPTER_NAMES:  # PEFT is imported only when an adapter is used
        from . import prefix

        return getattr(prefix, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AutoPeftModelForImageTextToText",
    "DCRRGPeftModel",
    "ObservationRecord",
    "label_reports",
    "label_tensor",
    "label_vectors",
]
