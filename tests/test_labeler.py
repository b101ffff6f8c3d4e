"""Rule families of the CheXpert-style labeler on hand-written sentences, and the four gold reports."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from hf_rrg.labeling import OBSERVATIONS, CheXpertLabeler, Mention, aggregate, clean_report, extract_impression
from hf_rrg.labeling.cleaning import split_sentences
from hf_rrg.labeling.phrases import PhraseSet


@pytest.fixture(scope="module")
def labeler() -> CheXpertLabeler:
    return CheXpertLabeler()


def values(labeler: CheXpertLabeler, report: str) -> dict[str, int]:
    """The mentioned observations of a report (unmentioned left out)."""
    return {k: v for k, v in labeler.label(report).values.items() if v is not None}


def test_observations_order() -> None:
    assert OBSERVATIONS[0] == "No Finding" and OBSERVATIONS[-1] == "Support Devices"
    assert len(OBSERVATIONS) == 14 and len(set(OBSERVATIONS)) == 14


def test_cleaning() -> None:
    assert clean_report("Effusion and/or  Atelectasis..Edema,CHF") == "effusion or atelectasis. edema, chf"
    assert clean_report("opacity/effusion 1/2") == "opacity or effusion 1/2"  # only between letters
    assert clean_report("No effusion. . Clear.") == "no effusion. clear."


def test_sentence_split_keeps_decimals() -> None:
    text = clean_report("A 1.5 cm nodule. 2. No effusion!")
    spans = split_sentences(text)
    assert [text[a:b] for a, b in spans] == ["a 1. 5 cm nodule.", "2.", "no effusion!"]


def test_impression_extraction() -> None:
    report = "FINDINGS: No effusion. IMPRESSION: Mild cardiomegaly. RECOMMENDATION: follow up."
    assert extract_impression(report).strip() == "Mild cardiomegaly."
    assert extract_impression("Mild cardiomegaly.") == "Mild cardiomegaly."
    assert values(CheXpertLabeler(impression_only=True), report) == {"Cardiomegaly": 1}
    assert values(CheXpertLabeler(), report) == {"Cardiomegaly": 1, "Pleural Effusion": 0}


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        # negation scope across conjunction lists
        ("No pleural effusion, pneumothorax, or focal consolidation.",
         {"No Finding": 1, "Pleural Effusion": 0, "Pneumothorax": 0, "Consolidation": 0}),
        ("No edema or pneumonia.", {"No Finding": 1, "Edema": 0, "Pneumonia": 0}),
        ("Lungs are clear without focal consolidation or effusion.",
         {"No Finding": 1, "Consolidation": 0, "Pleural Effusion": 0}),
        # clause breaks end the scope
        ("No effusion but there is a small pneumothorax.", {"Pneumothorax": 1, "Pleural Effusion": 0}),
        ("No edema, however mild cardiomegaly.", {"Cardiomegaly": 1, "Edema": 0}),
        ("Cardiomegaly without overt edema.", {"Cardiomegaly": 1, "Edema": 0}),
        ("No effusion is seen and the heart is enlarged.", {"Pleural Effusion": 0, "Cardiomegaly": 1}),
        # negation after the mention, and "normal X"
        ("Pleural effusion is absent.", {"No Finding": 1, "Pleural Effusion": 0}),
        ("The right pneumothorax has resolved.", {"No Finding": 1, "Pneumothorax": 0}),
        ("Resolution of the right pneumothorax.", {"No Finding": 1, "Pneumothorax": 0}),
        ("Negative for pneumonia.", {"No Finding": 1, "Pneumonia": 0}),
        ("Free of edema.", {"No Finding": 1, "Edema": 0}),
        ("Normal heart size.", {"No Finding": 1, "Cardiomegaly": 0}),
        ("The heart is not significantly enlarged.", {"No Finding": 1, "Cardiomegaly": 0}),
        ("Heart size and mediastinal contours are within normal limits.",
         {"No Finding": 1, "Cardiomegaly": 0, "Enlarged Cardiomediastinum": 0}),
        ("Effusion is present and the heart size is normal.", {"Pleural Effusion": 1, "Cardiomegaly": 0}),
        # pre-negation uncertainty wins over negation
        ("Cannot exclude pneumonia.", {"Pneumonia": -1}),
        ("A small pneumothorax is not excluded.", {"Pneumothorax": -1}),
        ("Cannot rule out a small effusion.", {"Pleural Effusion": -1}),
        ("No new consolidation.", {"Consolidation": -1}),
        # post-negation uncertainty
        ("Possible small left effusion.", {"Pleural Effusion": -1}),
        ("Opacity which may represent atelectasis.", {"Lung Opacity": 1, "Atelectasis": -1}),
        ("Findings suggest pneumonia.", {"Pneumonia": -1}),
        ("Atelectasis versus pneumonia.", {"Atelectasis": -1, "Pneumonia": -1}),
        ("Atelectasis or consolidation.", {"Atelectasis": -1, "Consolidation": -1}),
        ("Concern for pneumonia.", {"Pneumonia": -1}),
        ("Pneumonia could be present.", {"Pneumonia": -1}),
        ("Mild pulmonary vascular congestion.", {"Edema": -1}),
        ("Heart size is stable.", {"Cardiomegaly": -1}),
        ("Unchanged cardiac silhouette.", {"Cardiomegaly": -1}),
        ("Stable mild cardiomegaly.", {"Cardiomegaly": 1}),  # "stable" only for heart-size phrases
        ("No pneumothorax. Stable normal heart size.", {"No Finding": 1, "Pneumothorax": 0, "Cardiomegaly": 0}),
        # pseudo-negation does not negate
        ("No change in small left effusion.", {"Pleural Effusion": 1}),
    ],
)
def test_rule_families(labeler: CheXpertLabeler, report: str, expected: dict[str, int]) -> None:
    assert values(labeler, report) == expected


def test_unmentions_cancel_overlapping_matches(labeler: CheXpertLabeler) -> None:
    assert values(labeler, "Small pericardial effusion.") == {"No Finding": 1}
    result = labeler.label("Calcified nodule in the left lung.")
    assert result.values["Lung Lesion"] is None
    assert [m.phrase for m in result.other_mentions] == ["calcifi"]  # blocks No Finding
    assert result.values["No Finding"] is None
    # a massive effusion is not a mass
    assert values(labeler, "Massive left effusion.") == {"Pleural Effusion": 1}


def test_cardiac_positional_unmentions(labeler: CheXpertLabeler) -> None:
    result = labeler.label("Pacemaker lead projects over the heart. ICD in the left cardiac silhouette.")
    assert result.values["Cardiomegaly"] is None and result.values["Enlarged Cardiomediastinum"] is None
    assert result.values["Support Devices"] == 1 and result.values["No Finding"] == 1
    # without the position the same phrase is a mention
    assert labeler.label("The heart is enlarged.").values["Cardiomegaly"] == 1
    assert labeler.label("Nodule over the mediastinum.").values["Enlarged Cardiomediastinum"] is None


def test_mediastinum_phrase_needs_a_space(labeler: CheXpertLabeler) -> None:
    result = labeler.label("There is pneumomediastinum.")
    assert result.values["Enlarged Cardiomediastinum"] is None
    assert [m.phrase for m in result.other_mentions] == ["pneumomediastinum"]


def test_heart_failure_adds_uncertain_cardiomegaly(labeler: CheXpertLabeler) -> None:
    assert values(labeler, "Congestive heart failure.") == {"Edema": 1, "Cardiomegaly": -1}
    assert values(labeler, "Findings may reflect CHF.") == {"Edema": -1, "Cardiomegaly": -1}
    assert values(labeler, "No evidence of CHF.") == {"No Finding": 1, "Edema": 0}
    assert values(labeler, "CHF with cardiomegaly.") == {"Edema": 1, "Cardiomegaly": 1}  # positive wins


def test_no_finding_logic(labeler: CheXpertLabeler) -> None:
    assert labeler.label("").values["No Finding"] == 1
    assert labeler.label("Lungs are clear.").values["No Finding"] == 1
    assert labeler.label("Right PICC line. No effusion.").values["No Finding"] == 1  # devices do not count
    assert labeler.label("Possible pneumonia.").values["No Finding"] is None  # uncertain counts
    assert labeler.label("Emphysema.").values["No Finding"] is None  # other finding phrases count
    assert labeler.label("No emphysema.").values["No Finding"] == 1
    matrix = labeler.label_matrix(["Mild cardiomegaly.", "No effusion."])
    assert 0.0 not in matrix[:, 0]  # never 0
    assert math.isnan(matrix[0, 0]) and matrix[1, 0] == 1.0


@pytest.mark.parametrize(
    ("found", "expected"),
    [({0}, 0), ({1}, 1), ({-1}, -1), ({0, -1}, -1), ({0, 1}, 1), ({-1, 1}, 1), ({0, -1, 1}, 1)],
)
def test_aggregation_table(found: set[int], expected: int) -> None:
    mentions = [Mention("Edema", i, 0, 5, "edema", v) for i, v in enumerate(sorted(found))]
    result = aggregate(mentions)
    assert result["Edema"] == expected
    assert result["No Finding"] == (None if expected in (1, -1) else 1)
    assert all(result[o] is None for o in OBSERVATIONS if o not in ("Edema", "No Finding"))


def test_mention_spans_point_at_the_text(labeler: CheXpertLabeler) -> None:
    result = labeler.label("Heart size normal. 1. Left pleural effusion with adjacent atelectasis.")
    assert result.sentences == ["heart size normal.", "1.", "left pleural effusion with adjacent atelectasis."]
    spans = {(m.observation, m.sentence_index, result.sentences[m.sentence_index][m.start:m.end], m.value)
             for m in result.mentions}
    assert spans == {
        ("Cardiomegaly", 0, "heart size", 0),
        ("Pleural Effusion", 2, "effusion", 1),
        ("Atelectasis", 2, "atelecta", 1),
    }
    effusion = next(m for m in result.mentions if m.observation == "Pleural Effusion")
    assert (effusion.start, effusion.end, effusion.phrase) == (13, 21, "effusion")
    assert result.mentions_in_sentence(2) == [m for m in result.mentions if m.sentence_index == 2]


def test_label_matrix_matches_label(labeler: CheXpertLabeler) -> None:
    reports = ["No effusion.", "Possible pneumonia. Mild cardiomegaly.", ""]
    matrix = labeler.label_matrix(reports)
    assert matrix.shape == (3, 14) and matrix.dtype == np.float64
    for row, report in zip(matrix, reports):
        expected = [np.nan if v is None else float(v) for v in labeler.label(report).values.values()]
        np.testing.assert_array_equal(row, np.array(expected))
    assert labeler.label_matrix([]).shape == (0, 14)


def test_non_string_report_is_refused(labeler: CheXpertLabeler) -> None:
    with pytest.raises(ValueError, match="must be a string"):
        labeler.label(None)  # type: ignore[arg-type]


def test_phrase_folder_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="mention"):
        PhraseSet.from_directory(tmp_path)


def test_gold_reports_exactly(labeler: CheXpertLabeler, shared_data) -> None:
    folder = shared_data / "chexpert_labeler"
    with open(folder / "sample_reports.csv", newline="") as handle:
        reports = [row[0] for row in csv.reader(handle) if row]
    with open(folder / "labeled_reports.csv", newline="") as handle:
        gold = list(csv.reader(handle))
    assert gold[0] == ["Reports", *OBSERVATIONS]
    assert len(reports) == len(gold) - 1 == 4
    for report, row in zip(reports, gold[1:]):
        got = ["" if v is None else str(float(v)) for v in labeler.label(report).values.values()]
        assert got == row[1:], report
