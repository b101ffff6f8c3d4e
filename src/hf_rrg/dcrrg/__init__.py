"""DCRRG (Zhou, Wang, EMNLP 2024): observation labels and descriptions, instance datasets, the four-step recipe
(`pretrain` -> `describe` -> `prompt`), the P-Tuning v2 adapter through PEFT, and DCCLIP's retrieval/AUROC
evaluation. The model itself lives in `hf_rrg.modeling` (`DCRRGForConditionalGeneration`)."""

from .observations import ObservationRecord, label_reports, label_tensor, label_vectors

__all__ = ["ObservationRecord", "label_reports", "label_tensor", "label_vectors"]
