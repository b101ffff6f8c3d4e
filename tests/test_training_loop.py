"""The Accelerate loop end to end on real demo studies: tiny models memorise 8 reports (greedy and beam), a
resumed run repeats the uninterrupted run's losses, and a crash during a checkpoint save loses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch

from hf_rrg.data import load_builder
from hf_rrg.metrics import bleu
from hf_rrg.training import config_from_dict, fit
from hf_rrg.training.checkpointing import latest_checkpoint

MAX_LEN = 16


@pytest.fixture(scope="module")
def eight_studies() -> datasets.Dataset:
    """8 real demo studies (images shrunk to 72 px so the test stays fast)."""
    train = load_builder("demo")["train"].select(range(8))
    return train.map(lambda row: {"images": [im.convert("RGB").resize((72, 72)) for im in row["images"]]})


def tiny_config(method: str, **sections) -> object:
    model = dict(
        visual_backbone="test_resnet", visual_pretrained=False, d_model=64, d_ff=128, num_layers=1, num_heads=4,
        max_seq_length=MAX_LEN,
    )
    model.update(dict(cmm_size=64, cmm_dim=64, topk=8) if method == "r2gencmn" else dict(rm_d_model=64, rm_num_heads=4))
    model.update(sections.pop("model", {}))
    data = {
        "method": method,
        "model": model,
        "data": {"augment": False},
        "tokenizer": {"cleaner": "r2gen_iu_xray", "min_count": 1},
        "image_processor": {"eval_size": 64, "resize_shorter": 72, "crop_size": 64, "max_views": 1},
        "optimizer": {"lr_visual": 2e-3, "lr_rest": 3e-3, "weight_decay": 0.0},
        "scheduler": {"name": "constant"},
        "training": {"epochs": 2, "batch_size": 8, "eval_batch_size": 8, "patience": None, "seed": 0},
        "evaluation": {"val_metrics": ["bleu"], "test_metrics": ["bleu"]},
        "generation": {"num_beams": 3},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return config_from_dict(data)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["r2gencmn", "r2gen"])
def test_tiny_model_memorises_eight_real_reports(method: str, eight_studies, tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.set_num_threads(2)
    epochs = 80 if method == "r2gen" else 50  # the relational memory's gates need more steps to settle
    config = tiny_config(
        method,
        model={"dropout": 0.0, "visual_dropout": 0.0, "num_layers": 2},
        training={"epochs": epochs, "eval_every": 1000},  # validate at the end only (the slowest part at this size)
        # every target is cut to <bos> + MAX_LEN - 1 words, so the model never learned a word after them; the
        # official default (max_new_tokens = max_seq_length) writes one more, which is not what this test measures
        generation={"max_new_tokens": MAX_LEN - 1},
    )
    train = datasets.concatenate_datasets([eight_studies] * 4)  # 4 optimizer steps per epoch
    result = fit(config, tmp_path, datasets={"train": train, "validation": eight_studies, "test": eight_studies})
    assert result.test_metrics["bleu_4"] >= 0.9, result.test_metrics  # beam 3, through fit's own scoring

    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "model")
    processor = AutoProcessor.from_pretrained(tmp_path / "model")
    inputs = processor(images=[row["images"] for row in eight_studies])
    tokenizer = processor.tokenizer
    references = [[tokenizer.normalize_report(r, max_tokens=MAX_LEN - 1)] for r in eight_studies["report"]]
    for beams in (1, 3):
        ids = model.generate(pixel_values=inputs["pixel_values"], view_mask=inputs["view_mask"], num_beams=beams)
        predictions = [tokenizer.normalize_report(t) for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
        assert bleu(predictions, references)["bleu_4"] >= 0.9, (beams, predictions)
    written = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [row["id"] for row in written] == list(eight_studies["id"])
    assert [row["reference"] for row in written] == list(eight_studies["report"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best_epoch"] == epochs and metrics["test"]["bleu_4"] == pytest.approx(result.test_metrics["bleu_4"])
    assert (tmp_path / "training_curves.png").stat().st_size > 0


def _resume_config(epochs: int):
    # dropout and the random crop/flip are on: resume must reproduce their randomness too
    return tiny_config(
        "r2gencmn",
        model={"d_model": 32, "cmm_dim": 32},
        data={"augment": True},
        training={"epochs": epochs, "batch_size": 4, "eval_batch_size": 8},
        generation={"num_beams": 1, "max_length": 6},
    )


def _step_losses(run_dir: Path) -> list[tuple[int, float]]:
    lines = (run_dir / "logs" / "train_steps.jsonl").read_text().splitlines()
    return [(record["step"], record["loss"]) for record in map(json.loads, lines)]


@pytest.fixture(scope="module")
def straight_run(eight_studies, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("straight")
    splits = {"train": eight_studies, "validation": eight_studies.select(range(2)), "test": eight_studies.select(range(2))}
    fit(_resume_config(2), run_dir, datasets=splits)
    return run_dir


def _splits(eight_studies):
    return {"train": eight_studies, "validation": eight_studies.select(range(2)), "test": eight_studies.select(range(2))}


def test_resume_repeats_the_uninterrupted_losses(straight_run: Path, eight_studies, tmp_path: Path) -> None:
    fit(_resume_config(1), tmp_path, datasets=_splits(eight_studies))
    assert [s for s, _ in _step_losses(tmp_path)] == [1, 2]
    fit(_resume_config(2), tmp_path, resume=True, datasets=_splits(eight_studies))
    expected, resumed = _step_losses(straight_run), _step_losses(tmp_path)
    assert [s for s, _ in expected] == [1, 2, 3, 4] and [s for s, _ in resumed] == [1, 2, 3, 4]
    for (_, a), (_, b) in zip(expected, resumed):
        assert b == pytest.approx(a, abs=1e-6)
    with pytest.raises(FileExistsError, match="pass --resume"):
        fit(_resume_config(2), tmp_path, datasets=_splits(eight_studies))


def test_crash_during_checkpoint_save_keeps_the_last_good_one(
    straight_run: Path, eight_studies, tmp_path: Path, monkeypatch
) -> None:
    from hf_rrg.training import checkpointing

    real_save = checkpointing.save_module_state
    calls = {"n": 0}

    def crashing_save(path, state):
        calls["n"] += 1
        if calls["n"] == 2:  # the epoch-2 checkpoint: write part of it, then die
            Path(path).write_bytes(b"half a file")
            raise RuntimeError("simulated crash mid-save")
        return real_save(path, state)

    monkeypatch.setattr(checkpointing, "save_module_state", crashing_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(_resume_config(2), tmp_path, datasets=_splits(eight_studies))
    checkpoints = tmp_path / "checkpoints"
    assert latest_checkpoint(tmp_path) == checkpoints / "epoch_0000"
    assert (checkpoints / "LATEST").read_text() == "epoch_0000"
    assert (checkpoints / ".tmp_epoch_0001").is_dir()  # the interrupted save, never mistaken for a checkpoint
    assert json.loads((checkpoints / "epoch_0000" / "trainer_state.json").read_text())["epoch"] == 0

    monkeypatch.setattr(checkpointing, "save_module_state", real_save)
    fit(_resume_config(2), tmp_path, resume=True, datasets=_splits(eight_studies))
    assert not (checkpoints / ".tmp_epoch_0001").exists()
    assert latest_checkpoint(tmp_path) == checkpoints / "epoch_0001"
    assert not (checkpoints / "epoch_0000").exists()  # keep_checkpoints=1
    expected, resumed = _step_losses(straight_run), _step_losses(tmp_path)
    assert [s for s, _ in resumed] == [1, 2, 3, 4]  # the crashed epoch's steps were replaced, not duplicated
    for (_, a), (_, b) in zip(expected, resumed):
        assert b == pytest.approx(a, abs=1e-6)


class Payload:
    """Unpickling this writes a marker file (what a planted pickle in a checkpoint would run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def test_resume_never_unpickles_a_planted_checkpoint_file(straight_run: Path, eight_studies, tmp_path: Path) -> None:
    import pickle

    run_dir = tmp_path / "run"
    fit(_resume_config(1), run_dir, datasets=_splits(eight_studies))
    checkpoint = latest_checkpoint(run_dir)
    marker = tmp_path / "marker.txt"
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin"):  # Accelerate's pickle names
        (checkpoint / name).write_bytes(pickle.dumps(Payload(marker)))
    fit(_resume_config(2), run_dir, resume=True, datasets=_splits(eight_studies))
    assert not marker.exists()
    for (_, a), (_, b) in zip(_step_losses(straight_run), _step_losses(run_dir)):
        assert b == pytest.approx(a, abs=1e-6)


def test_resume_of_a_finished_run_trains_added_epochs_or_says_why_not(eight_studies, tmp_path: Path, capsys) -> None:
    from hf_rrg.training import run_training

    run_training(_resume_config(1), tmp_path, datasets=_splits(eight_studies))
    files = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()
    run_training(_resume_config(1), tmp_path, resume=True, datasets=_splits(eight_studies))
    assert "has finished: nothing to resume" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == files  # nothing rewritten
    run_training(_resume_config(2), tmp_path, resume=True, datasets=_splits(eight_studies))
    out = capsys.readouterr().out
    assert "Config changed since the run finished (training.epochs: 1 -> 2): resuming stage 'train'" in out
    assert [s for s, _ in _step_losses(tmp_path)] == [1, 2, 3, 4]  # the added epoch was trained
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs_trained"] == 2
    changes = json.loads((tmp_path / "resume_changes.jsonl").read_text().splitlines()[0])["changes"]
    assert changes == {"training.epochs": {"old": 1, "new": 2}}
