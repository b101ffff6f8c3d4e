"""Clinical efficacy against hand-computed numbers, AUROC against its pairwise definition, labeler plumbing."""

from __future__ import annotations

import csv
import random

import numpy as np
import pytest

from hf_rrg.metrics import (
    CHEXPERT_OBSERVATIONS,
    Labeler,
    auroc,
    binarize_labels,
    clinical_efficacy,
    clinical_efficacy_from_labels,
)

NAN = np.nan


def _matrices() -> tuple[np.ndarray, np.ndarray]:
    predicted = np.full((3, 14), NAN)
    reference = np.full((3, 14), NAN)
    predicted[:, 0], reference[:, 0] = [1, NAN, 0], [1, 0, NAN]  # No Finding
    predicted[:, 2], reference[:, 2] = [1, -1, 1], [1, 1, -1]  # Cardiomegaly
    predicted[:, 10], reference[:, 10] = [NAN, 1, 0], [1, 1, 0]  # Pleural Effusion
    return predicted, reference


def test_binarize_maps_uncertain_by_policy_and_unmentioned_to_zero():
    labels = np.array([[1, 0, -1, NAN]])
    assert binarize_labels(labels, uncertain=0).tolist() == [[1, 0, 0, 0]]
    assert binarize_labels(labels, uncertain=1).tolist() == [[1, 0, 1, 0]]
    with pytest.raises(ValueError, match="uncertain must be 0"):
        binarize_labels(labels, uncertain=-1)


def test_ce_uncertain_as_negative_hand_computed():
    predicted, reference = _matrices()
    ce = clinical_efficacy_from_labels(predicted, reference, uncertain=0)
    # TP: No Finding 1, Cardiomegaly 1, Effusion 1; FP: Cardiomegaly 1; FN: Cardiomegaly 1, Effusion 1.
    assert ce.micro == pytest.approx({"precision": 3 / 4, "recall": 3 / 5, "f1": 2 / 3})
    assert ce.macro["precision"] == pytest.approx((1 + 0.5 + 1) / 14)
    assert ce.macro["recall"] == pytest.approx((1 + 0.5 + 0.5) / 14)
    assert ce.macro["f1"] == pytest.approx((1 + 0.5 + 2 / 3) / 14)
    # Reports: {NF, Cardio} vs {NF, Cardio, Eff}; {Eff} vs {Cardio, Eff}; {Cardio} vs {}.
    assert ce.example["precision"] == pytest.approx((1 + 1 + 0) / 3)
    assert ce.example["recall"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert ce.example["f1"] == pytest.approx((4 / 5 + 2 / 3 + 0) / 3)
    assert ce.per_class["Pleural Effusion"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert ce.per_class["Edema"]["f1"] == 0.0 and ce.per_class["Edema"]["support"] == 0
    flat = ce.as_dict()
    assert flat["ce_micro_f1"] == pytest.approx(2 / 3) and "ce_auroc_macro" not in flat


def test_ce_uncertain_as_positive_hand_computed():
    predicted, reference = _matrices()
    ce = clinical_efficacy_from_labels(predicted, reference, uncertain=1)
    # Cardiomegaly becomes [1,1,1] on both sides: TP 5, FP 0, FN 1 (Effusion, report 0).
    assert ce.micro == pytest.approx({"precision": 1.0, "recall": 5 / 6, "f1": 10 / 11})
    assert ce.uncertain == 1


def test_zero_division_value_is_used():
    empty = np.full((2, 14), NAN)
    ce = clinical_efficacy_from_labels(empty, empty, zero_division=1.0)
    assert ce.micro == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_auroc_hand_computed_and_against_pairwise_definition():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == pytest.approx(3.5 / 4)  # one tie counts 1/2
    assert np.isnan(auroc([0.1, 0.2], [1, 1]))
    rng = random.Random(3)
    scores = [rng.choice([0.1, 0.2, 0.3, 0.5, 0.7]) for _ in range(60)]
    labels = [rng.random() < 0.4 for _ in range(60)]
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    pairwise = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert auroc(scores, labels) == pytest.approx(pairwise, abs=1e-12)


def test_auroc_per_class_with_probabilities():
    predicted, reference = _matrices()
    probabilities = np.zeros((3, 14))
    probabilities[:, 10] = [0.9, 0.8, 0.1]  # Effusion reference (uncertain=0): [1, 1, 0] -> perfect ranking
    probabilities[:, 2] = [0.2, 0.9, 0.5]  # Cardiomegaly reference: [1, 1, 0] -> 1 of 2 pairs right
    ce = clinical_efficacy_from_labels(predicted, reference, probabilities=probabilities)
    assert ce.auroc["Pleural Effusion"] == 1.0
    assert ce.auroc["Cardiomegaly"] == pytest.approx(0.5)
    assert np.isnan(ce.auroc["Edema"])  # no positive reference
    assert ce.as_dict()["ce_auroc_macro"] == pytest.approx(np.nanmean(list(ce.auroc.values())))


def test_label_matrix_checks_name_the_problem():
    good, _ = _matrices()
    with pytest.raises(ValueError, match=r"shape \(3, 13\)"):
        clinical_efficacy_from_labels(good[:, :13], good[:, :13])
    bad = good.copy()
    bad[0, 1] = 2
    with pytest.raises(ValueError, match=r"label values \[2.0\]"):
        clinical_efficacy_from_labels(good, bad)


class KeywordLabeler:
    """A minimal labeler obeying the protocol: 'effusion' positive, 'no effusion' negative."""

    def label_matrix(self, reports: list[str]) -> np.ndarray:
        matrix = np.full((len(reports), 14), NAN)
        for row, report in enumerate(reports):
            if "no effusion" in report:
                matrix[row, 10] = 0
            elif "effusion" in report:
                matrix[row, 10] = 1
        return matrix


def test_pluggable_labeler():
    assert isinstance(KeywordLabeler(), Labeler)
    ce = clinical_efficacy(
        ["small effusion", "no effusion", "effusion"], ["effusion", "effusion", "clear"], labeler=KeywordLabeler()
    )
    assert ce.micro == pytest.approx({"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2})
    with pytest.raises(TypeError, match="needs a label_matrix"):
        clinical_efficacy(["a"], ["b"], labeler=object())


def test_default_labeler_on_real_reports(shared_data):
    labeling = pytest.importorskip("hf_rrg.labeling")
    assert tuple(labeling.OBSERVATIONS) == CHEXPERT_OBSERVATIONS
    with open(shared_data / "chexpert_labeler" / "sample_reports.csv", newline="") as handle:
        reports = [row[0] for row in csv.reader(handle) if row and row[0].strip()]  # no header row
    ce = clinical_efficacy(reports, reports)  # a report agrees with itself
    labels = labeling.CheXpertLabeler().label_matrix(reports)
    assert (binarize_labels(labels) == 1).sum() >= 3  # the sample reports do mention findings
    assert ce.micro["f1"] == 1.0 and ce.example["f1"] == 1.0
    changed = clinical_efficacy(["No acute cardiopulmonary process."] * len(reports), reports)
    assert changed.micro["recall"] < 1.0
