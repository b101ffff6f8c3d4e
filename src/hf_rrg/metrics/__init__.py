"""Report-generation metrics: NLG scores equal to pycocoevalcap's (fast, offline), METEOR through its jar,
clinical efficacy from a CheXpert labeler, learned metrics (BERTScore, F1-CheXbert, F1-RadGraph, RaTEScore),
bootstrap intervals and paired significance tests, evaluation protocols, and `evaluate` module wrappers."""

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
from .errors import EvaluationInputError, MetricUnavailableError, MetricWeightsNotFoundError
from .evaluate_reports import DEFAULT_METRICS, LEARNED_METRICS, METRICS, Evaluation, evaluate_detailed, evaluate_reports
from .meteor import meteor
from .protocols import PROTOCOLS, prepare_texts
from .result import NLGScore
from .rouge import lcs_length, rouge_l
from .significance import Comparison, Interval, bootstrap_intervals, compare_systems

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
    "Comparison",
    "DEFAULT_METRICS",
    "EVALUATE_MODULES",
    "Evaluation",
    "EvaluationInputError",
    "Interval",
    "LEARNED_METRICS",
    "Labeler",
    "METRICS",
    "MetricUnavailableError",
    "MetricWeightsNotFoundError",
    "NLGScore",
    "PROTOCOLS",
    "auroc",
    "binarize_labels",
    "bootstrap_intervals",
    "bleu",
    "cider_d",
    "cider_original",
    "clinical_efficacy",
    "clinical_efficacy_from_labels",
    "compare_systems",
    "evaluate_detailed",
    "evaluate_reports",
    "lcs_length",
    "meteor",
    "module_path",
    "prepare_texts",
    "rouge_l",
]
