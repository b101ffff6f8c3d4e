"""The README's main job end to end: `hf-rrg train r2gencmn_demo` on the embedded demo set writes test reports that
depend on the image (no `<unk>`, at least 5 distinct reports under the config's own beam search) and ends by
printing test studies with their reports, the scores and where the outputs went."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_rrg.cli import main
from hf_rrg.training.config import load_config
from hf_rrg.training.run_summary import read_predictions

MIN_DISTINCT_REPORTS = 5


@pytest.mark.slow
def test_main_job_writes_image_dependent_test_reports(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "demo"
    assert main(["train", "r2gencmn_demo", "--output-dir", str(run)]) == 0
    out = capsys.readouterr().out

    predictions = read_predictions(run)
    generated = [record["prediction"] for record in predictions]
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    config = load_config("r2gencmn_demo")
    assert metrics["generation"]["num_beams"] == config.generation.num_beams  # the config's own beam search
    assert len(generated) == metrics["num_test"] > MIN_DISTINCT_REPORTS
    assert not [text for text in generated if "<unk>" in text]
    assert all(text.strip(" .") for text in generated), "an empty report"
    distinct = set(generated)
    assert len(distinct) >= MIN_DISTINCT_REPORTS, sorted(distinct)

    # the closing summary: three test studies with both reports, the scores and the output paths
    tail = out[out.index("Test reports:") :]
    assert f"Test reports: {len(distinct)} distinct among {len(generated)} studies, 0 with <unk>" in tail
    for record in predictions[:3]:
        assert f"generated: {record['prediction']}" in tail and f"reference: {record['reference']}" in tail
        assert f"images/{record['id']}.jpg" in tail
    assert "Test scores (best epoch" in tail and f"bleu_4 {metrics['test']['bleu_4']:.4f}" in tail
    assert str(run / "training_curves.png") in tail and (run / "training_curves.png").is_file()
    assert (run / "model" / "config.json").is_file()
