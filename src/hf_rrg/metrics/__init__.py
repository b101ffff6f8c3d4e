"""Report-generation metrics: NLG scores equal to pycocoevalcap's (fast, offline), METEOR through its jar,
clinical efficacy from a CheXpert labeler, evaluation protocols, and `evaluate` module wrappers."""

from __future__ import annotations

from pathlib import Path

from .bleu import bleu
from .cider import cider_d, cider_original
from .clinical import (
    CHEXPERT_OBSERVATIONS,
    ClinicalEfficacy,
    Labeler,
    auroc,
    binarize_labels,
    clinical_efficacy,
    clinical_efficacy_from_labels,
)
from .evaluate_reports import DEFAULT_METRICS, METRICS, evaluate_reports
from .meteor import meteor
from .protocols import PROTOCOLS, prepare_texts
from .result import NLGScore
from .rouge import lcs_length, rouge_l

_MODULES = Path(__file__).resolve().parent / "evaluate_modules"
EVALUATE_MODULES = ("bleu", "rouge_l", "cider_d", "cider", "meteor", "clinical_efficacy")


def module_path(name: str) -> str:
    """Local path of the `evaluate` module for metric `name`, for ``evaluate.load(module_path(name))``."""
    if name not in EVALUATE_MODULES:
        raise ValueError(f"no evaluate module named {name!r}; choose one of {list(EVALUATE_MODULES)}")
    return str(_MODULES / name)


__all__ = [
    "CHEXPERT_OBSERVATIONS",
    "ClinicalEfficacy",
    "DEFAULT_METRICS",
    "EVALUATE_MODULES",
    "Labeler",
    "METRICS",
    "NLGScore",
    "PROTOCOLS",
    "auroc",
    "binarize_labels",
    "bleu",
    "cider_d",
    "cider_original",
    "clinical_efficacy",
    "clinical_efficacy_from_labels",
    "evaluate_reports",
    "lcs_length",
    "meteor",
    "module_path",
    "prepare_texts",
    "rouge_l",
]
