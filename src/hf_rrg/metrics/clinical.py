"""Clinical efficacy (CE): precision, recall and F1 of the CheXpert observations found in generated reports.

Both the predictions and the references are labelled by the same labeler (any object with
``label_matrix(reports) -> ndarray (N, 14)`` holding 1 positive, 0 negative, -1 uncertain, NaN unmentioned,
columns in `CHEXPERT_OBSERVATIONS` order). Labels are then made binary: positive -> 1, negative and
unmentioned -> 0, uncertain -> `uncertain` (0 by default, as R2Gen's ``compute_ce.py``; 1 as CheXbert-based
scorers do). With TP/FP/FN counted between the binary matrices:

- micro: P = sum TP / sum (TP + FP), R = sum TP / sum (TP + FN) over all reports and classes, F1 from them;
- macro: the mean over classes of each class's P, R and F1 (F1 per class, then averaged);
- example-based: per report P = |pred & ref| / |pred|, R = |pred & ref| / |ref|,
  F1 = 2 |pred & ref| / (|pred| + |ref|), averaged over reports;
- per class: P, R, F1, support (reference positives) and, when probabilities are given, AUROC.

A ratio whose denominator is 0 takes `zero_division` (0.0 by default, as scikit-learn's default does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ..labeling.observations import OBSERVATIONS
from .inputs import has_words

CHEXPERT_OBSERVATIONS: tuple[str, ...] = tuple(OBSERVATIONS)


@runtime_checkable
class Labeler(Protocol):
    """Anything that labels reports with the 14 CheXpert observations."""

    def label_matrix(self, reports: list[str]) -> np.ndarray:
        """(N, 14) array of 1 (positive), 0 (negative), -1 (uncertain), NaN (unmentioned)."""
        ...


def check_label_matrix(matrix: np.ndarray, n_reports: int, source: str, n_classes: int = 14) -> np.ndarray:
    """`matrix` as float64 after checking its shape and values; errors name `source`."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (n_reports, n_classes):
        raise ValueError(f"{source} gave labels of shape {matrix.shape}; expected ({n_reports}, {n_classes})")
    allowed = np.isnan(matrix) | np.isin(matrix, (1.0, 0.0, -1.0))
    if not allowed.all():
        bad = sorted(set(matrix[~allowed].tolist()))[:5]
        raise ValueError(f"{source} gave label values {bad}; only 1, 0, -1 and NaN (unmentioned) are allowed")
    return matrix


def binarize_labels(matrix: np.ndarray, uncertain: int = 0) -> np.ndarray:
    """1 -> 1, 0 and NaN (unmentioned) -> 0, -1 (uncertain) -> `uncertain` (0 or 1); returns an int array."""
    if uncertain not in (0, 1):
        raise ValueError(f"uncertain must be 0 (uncertain counts as negative) or 1 (as positive), got {uncertain!r}")
    matrix = np.asarray(matrix, dtype=np.float64)
    binary = np.zeros(matrix.shape, dtype=np.int64)
    binary[matrix == 1] = 1
    binary[matrix == -1] = uncertain
    return binary


def _ratio(numerator: np.ndarray, denominator: np.ndarray, zero_division: float) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, float(zero_division))
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN when one class is absent."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    _, starts, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average_rank = starts + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(average_rank, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass(frozen=True)
class ClinicalEfficacy:
    """CE scores: micro, macro and example-based P/R/F1, and per-class scores."""

    micro: dict[str, float]
    macro: dict[str, float]
    example: dict[str, float]
    per_class: dict[str, dict[str, float]]
    uncertain: int
    n_reports: int
    auroc: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """Flat scores: ``ce_micro_f1``, ``ce_macro_precision``, ``ce_example_recall``, ``ce_auroc_macro``..."""
        flat: dict[str, float] = {}
        for group, scores in (("micro", self.micro), ("macro", self.macro), ("example", self.example)):
            for name, value in scores.items():
                flat[f"ce_{group}_{name}"] = value
        if self.auroc:
            flat["ce_auroc_macro"] = float(np.nanmean(list(self.auroc.values()))) if not all(
                np.isnan(v) for v in self.auroc.values()
            ) else float("nan")
        return flat


def clinical_efficacy_from_labels(
    predicted: np.ndarray,
    reference: np.ndarray,
    uncertain: int = 0,
    probabilities: np.ndarray | None = None,
    observations: Sequence[str] = CHEXPERT_OBSERVATIONS,
    zero_division: float = 0.0,
) -> ClinicalEfficacy:
    """CE scores from label matrices (values 1, 0, -1, NaN) of the predictions and of the references.

    `probabilities` (optional, same shape, the predicted probability that each observation is positive) adds
    per-class AUROC against the binarised reference labels.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    n_reports = predicted.shape[0] if predicted.ndim == 2 else -1
    predicted = check_label_matrix(predicted, n_reports, "the prediction labels", len(observations))
    reference = check_label_matrix(reference, n_reports, "the reference labels", len(observations))
    pred = binarize_labels(predicted, uncertain)
    ref = binarize_labels(reference, uncertain)
    tp = (pred & ref).astype(np.float64)
    fp = (pred & (1 - ref)).astype(np.float64)
    fn = ((1 - pred) & ref).astype(np.float64)

    def prf(tp_: np.ndarray, fp_: np.ndarray, fn_: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        precision = _ratio(tp_, tp_ + fp_, zero_division)
        recall = _ratio(tp_, tp_ + fn_, zero_division)
        f1 = _ratio(2 * tp_, 2 * tp_ + fp_ + fn_, zero_division)
        return precision, recall, f1

    micro = prf(tp.sum(), fp.sum(), fn.sum())
    per_class = prf(tp.sum(axis=0), fp.sum(axis=0), fn.sum(axis=0))
    per_example = prf(tp.sum(axis=1), fp.sum(axis=1), fn.sum(axis=1))
    names = ("precision", "recall", "f1")
    support = ref.sum(axis=0)
    classes = {
        name: {"precision": float(per_class[0][i]), "recall": float(per_class[1][i]), "f1": float(per_class[2][i]),
               "support": int(support[i])}
        for i, name in enumerate(observations)
    }
    auroc_scores: dict[str, float] = {}
    if probabilities is not None:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.shape != pred.shape:
            raise ValueError(f"probabilities have shape {probabilities.shape}; expected {pred.shape}")
        for i, name in enumerate(observations):
            auroc_scores[name] = auroc(probabilities[:, i], ref[:, i])
            classes[name]["auroc"] = auroc_scores[name]
    return ClinicalEfficacy(
        micro={n: float(v) for n, v in zip(names, micro)},
        macro={n: float(np.mean(v)) for n, v in zip(names, per_class)},
        example={n: float(np.mean(v)) if len(v) else float(zero_division) for n, v in zip(names, per_example)},
        per_class=classes,
        uncertain=uncertain,
        n_reports=n_reports,
        auroc=auroc_scores,
    )


def default_labeler() -> Labeler:
    """hf-rrg's rule-based CheXpert labeler."""
    try:
        from hf_rrg.labeling import CheXpertLabeler
    except ImportError as error:
        raise ImportError(f"the default labeler hf_rrg.labeling.CheXpertLabeler is not available ({error}); "
                          "pass `labeler=` an object with label_matrix(reports)") from error
    return CheXpertLabeler()


def clinical_labels(
    predictions: Sequence[str], references: Sequence[str], labeler: Labeler | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Checked label matrices of the predictions and of the references by `labeler` (default: our CheXpert one)."""
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references for CE")
    if labeler is None:
        labeler = default_labeler()
    if not callable(getattr(labeler, "label_matrix", None)):
        raise TypeError(f"{type(labeler).__name__} is not a labeler: it needs a label_matrix(reports) method")
    source = type(labeler).__name__
    predicted = check_label_matrix(labeler.label_matrix(predictions), len(predictions), f"{source} (predictions)")
    reference = check_label_matrix(labeler.label_matrix(references), len(references), f"{source} (references)")
    return predicted, reference


def clinical_efficacy(
    predictions: Sequence[str],
    references: Sequence[str],
    labeler: Labeler | None = None,
    uncertain: int = 0,
    zero_division: float = 0.0,
) -> ClinicalEfficacy:
    """Label predictions and references with `labeler` (default: `hf_rrg.labeling.CheXpertLabeler()`) and score.

    Each prediction has one reference report here (CE compares two label vectors). A reference with no words
    is refused: a labeler would read it as "No Finding" and a normal prediction would score 1.0 against it.
    """
    for index, reference in enumerate(references):
        if not has_words(reference):
            raise ValueError(f"reference {index} has no words ({reference!r:.60}); CE needs a reference report")
    predicted, reference = clinical_labels(predictions, references, labeler)
    return clinical_efficacy_from_labels(predicted, reference, uncertain=uncertain, zero_division=zero_division)
