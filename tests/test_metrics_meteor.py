"""METEOR through the jar: pycocoevalcap's numbers from one JVM, and clear errors instead of hangs."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from hf_rrg.metrics import meteor
from hf_rrg.metrics.meteor import score_line

pytest.importorskip("pycocoevalcap.meteor.meteor", reason="pycocoevalcap (jar and oracle) is not installed")
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs Java, which is not on PATH")


@needs_java
def test_meteor_equals_pycocoevalcap(shared_data):
    from pycocoevalcap.meteor.meteor import Meteor

    annotation = json.loads((shared_data / "iu_xray" / "annotation.json").read_text())
    reports = [" ".join(re.findall(r"[a-z0-9]+|[^\sa-z0-9]", r["report"].lower())) for r in annotation["train"][:90]]
    predictions = reports[:40] + ["", "heart", "zzyzx qwerty", "the the the the"]
    references = [[reports[(i + 41) % 90], reports[(i + 60) % 90]][: 1 + i % 2] for i in range(len(predictions))]
    expected, expected_items = Meteor().compute_score(
        {i: r for i, r in enumerate(references)}, {i: [p] for i, p in enumerate(predictions)}
    )
    result = meteor(predictions, references)
    assert result.score == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(result.per_item["meteor"], expected_items, rtol=0, atol=1e-12)
    assert result.per_item["meteor"][40] == 0.0  # the empty prediction


def test_score_line_sanitises_like_pycocoevalcap():
    # pycocoevalcap strips '|||' and reduces double spaces in the hypothesis; newlines would break the protocol.
    assert score_line("a  b|||c", ["r1", "r 2"]) == "SCORE ||| r1 ||| r 2 ||| a bc"
    assert score_line("x\ny", ["line\none"]) == "SCORE ||| line one ||| x y"


def test_missing_java_is_a_clear_error():
    with pytest.raises(RuntimeError, match="Java was not found"):
        meteor(["a"], ["a"], java="/nonexistent/java-binary")


@needs_java
def test_timeout_stops_the_jvm_with_an_error():
    with pytest.raises(RuntimeError, match="timeout"):
        meteor(["the heart is normal"], ["the heart is normal"], timeout=0.05)


def test_missing_pycocoevalcap_is_a_clear_error(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pycocoevalcap" else real_find_spec(name, *a)
    )
    with pytest.raises(ModuleNotFoundError, match="pip install pycocoevalcap"):
        meteor(["a"], ["a"])
