"""`SCORE_NAMES` (what config checks accept as `training.val_metric` before anything is computed) equals the names
`evaluate_reports` really returns, for every family computable on this machine."""

from __future__ import annotations

import shutil

import pytest

from hf_rrg.metrics import evaluate_reports
from hf_rrg.metrics.evaluate_reports import LEARNED_METRICS, METRICS
from hf_rrg.metrics.score_names import SCORE_NAMES, score_names

REPORTS = ["the heart is normal in size . no pleural effusion .", "there is a small left pleural effusion ."]
REFERENCES = ["heart size is normal . there is no effusion .", "small left effusion . no pneumothorax ."]


def test_every_family_has_its_score_names() -> None:
    assert set(SCORE_NAMES) == set(METRICS)


@pytest.mark.parametrize("family", [name for name in METRICS if name not in LEARNED_METRICS])
def test_score_names_are_what_the_family_returns(family: str) -> None:
    if family == "meteor" and shutil.which("java") is None:
        pytest.skip("METEOR needs Java (not installed)")
    scores = evaluate_reports(REPORTS, REFERENCES, metrics=[family], protocol="default")
    assert sorted(scores) == sorted(SCORE_NAMES[family])


def test_score_names_of_several_families_keep_their_order() -> None:
    assert score_names(["rouge_l", "bleu"]) == ["rouge_l", "bleu_1", "bleu_2", "bleu_3", "bleu_4"]
    assert score_names(["unknown"]) == []
