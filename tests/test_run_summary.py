"""`format_run_summary`: the text a finished run ends with, from RUN_DIR/predictions.jsonl + metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hf_rrg.resources import resource_dir
from hf_rrg.training.run_summary import format_run_summary, read_predictions

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO_ROOT / "datasets_scripts" / "demo" / "data"

PREDICTIONS = [
    {"id": "a1", "prediction": "bilateral airspace opacities .", "reference": "Bilateral patchy opacities."},
    {"id": "b2", "prediction": "normal .", "reference": "Normal appearances."},
    {"id": "c3", "prediction": "bilateral airspace opacities .", "reference": "Right upper lobe consolidation."},
    {"id": "d4", "prediction": "<unk> consolidation .", "reference": "Left basal consolidation."},
]
METRICS = {
    "method": "r2gencmn",
    "val_metric": "cider_d",
    "best_epoch": 7,
    "epochs_trained": 12,
    "test": {"bleu_1": 0.25, "bleu_4": 0.012345, "meteor": float("nan")},
}


def _run(folder: Path, predictions: list[dict] = PREDICTIONS, config: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in predictions), encoding="utf-8")
    (folder / "metrics.json").write_text(json.dumps(METRICS), encoding="utf-8")  # NaN is written as NaN
    if config is not None:
        (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return folder


def test_summary_shows_the_first_three_studies_counts_scores_and_outputs(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    (run / "training_curves.png").write_bytes(b"png")
    (run / "model").mkdir()
    (run / "model" / "config.json").write_text("{}", encoding="utf-8")
    lines = format_run_summary(run).splitlines()
    # 4 studies, 3 distinct generated reports ("bilateral airspace opacities ." twice), one with <unk>
    assert lines[0] == "Test reports: 3 distinct among 4 studies, 1 with <unk>; the first 3:"
    assert lines[1:10] == [
        "  a1", "    generated: bilateral airspace opacities .", "    reference: Bilateral patchy opacities.",
        "  b2", "    generated: normal .", "    reference: Normal appearances.",
        "  c3", "    generated: bilateral airspace opacities .", "    reference: Right upper lobe consolidation.",
    ]  # fmt: skip
    assert "d4" not in "\n".join(lines)
    assert lines[10] == "Test scores (best epoch 7 of 12 by validation cider_d): bleu_1 0.2500, bleu_4 0.0123"
    assert lines[11] == f"Run folder: {run}"
    listed = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in lines[12:-1]}
    assert listed == {
        "metrics": str(run / "metrics.json"),
        "predictions": str(run / "predictions.jsonl"),
        "model": str(run / "model"),
        "curves": str(run / "training_curves.png"),
    }  # no heat maps or logs in this run: not listed
    assert lines[-1] == f"Report of an image: hf-rrg generate --model {run / 'model'} IMAGE"
    (run / "heatmaps").mkdir()
    assert f"  heat maps:   {run / 'heatmaps'}" in format_run_summary(run).splitlines()


def test_summary_names_the_demo_images_by_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = [json.loads(line) for line in (DEMO_DATA / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    test = [r for r in records if r["split"] == "test"][:2]
    predictions = [{"id": r["id"], "prediction": "x .", "reference": r["report"]} for r in test]
    run = _run(tmp_path / "run", predictions, config={"method": "r2gencmn", "data": {"builder": "demo"}})
    monkeypatch.chdir(REPO_ROOT)
    lines = format_run_summary(run, num_examples=2).splitlines()
    assert lines[0] == "Test reports: 1 distinct among 2 studies, 0 with <unk>; the first 2:"
    # the copy the package reads (the checkout's in an editable install, site-packages' otherwise), named relative
    # to the working directory when it lies below it
    image = (resource_dir("datasets_scripts") / "demo" / "data" / test[0]["file_name"]).resolve()
    shown = Path(lines[1].removeprefix("  "))
    assert (REPO_ROOT / shown).resolve() == image and image.is_file()
    assert shown.is_absolute() != image.is_relative_to(REPO_ROOT)
    assert lines[3] == f"    reference: {test[0]['report']}"
    # a run on another copy of the data (data_dir set) shows ids: the demo's own files may not be what it used
    other = _run(tmp_path / "other", predictions, config={"data": {"builder": "demo", "data_dir": "/elsewhere"}})
    assert format_run_summary(other).splitlines()[1] == f"  {test[0]['id']}"


def test_missing_or_broken_run_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"predictions.jsonl not found: .* not a finished training run"):
        format_run_summary(tmp_path)
    (tmp_path / "predictions.jsonl").write_text('{"id": "a", "prediction": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"predictions.jsonl line 1 lacks \['reference'\]"):
        read_predictions(tmp_path)
    (tmp_path / "predictions.jsonl").write_text('{"id": "a", "prediction": "x", "reference": "y"}\n', encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=r"metrics.json not found"):
        format_run_summary(tmp_path)
