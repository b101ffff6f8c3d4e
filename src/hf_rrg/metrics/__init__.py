"""Report-generation metrics: NLG scores equal to pycocoevalcap's (fast, offline), METEOR through its jar,
clinical efficacy from a CheXpert labeler, learned metrics (BERTScore, F1-CheXbert, F1-RadGraph, RaTEScore),
bootstrap intervals and paired significance tests, evaluation protocols, and `evaluate` module wrappers.

Names are imported on first use, so that `hf-rrg --help` (which registers `commands`) loads no numpy.
"""

from __future__ import annotations

from pathlib import Path

from ..modeling.lazy_exports import lazy_exports

_LAZY_ALL, __getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "bleu": ("bleu",),
        "cider": ("cider_d", "cider_original"),
        "clinical": (
            "CHEXPERT_OBSERVATIONS",
            "ClinicalEfficacy",
            "Labeler",
            "auroc",
            "binarize_labels",
            "clinical_efficacy",
            "clinical_efficacy_from_labels",
        ),
        "errors": ("EvaluationInputError", "MetricUnavailableError", "MetricWeightsNotFoundError"),
        "evaluate_reports": (
            "DEFAULT_METRICS",
            "LEARNED_METRICS",
            "METRICS",
            "Evaluation",
            "evaluate_detailed",
            "evaluate_reports",
        ),
        "meteor": ("meteor",),
        "protocols": ("PROTOCOLS", "prepare_texts"),
        "result": ("NLGScore",),
        "rouge": ("lcs_length", "rouge_l"),
        "significance": ("Comparison", "Interval", "bootstrap_intervals", "compare_systems"),
    },
)

_MODULES = Path(__file__).resolve().parent / "evaluate_modules"
EVALUATE_MODULES = ("bleu", "rouge_l", "cider_d", "cider", "meteor", "clinical_efficacy")


def module_path(name: str) -> str:
    """Local path of the `evaluate` module for metric `name`, for ``evaluate.load(module_path(name))``."""
    if name not in EVALUATE_MODULES:
        raise ValueError(f"no evaluate module named {name!r}; choose one of {list(EVALUATE_MODULES)}")
    return str(_MODULES / name)


__all__ = [*_LAZY_ALL, "EVALUATE_MODULES", "module_path"]
