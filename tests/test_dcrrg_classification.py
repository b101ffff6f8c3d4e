"""DCRRG Table 3 (`hf-rrg dcrrg classify`) on the embedded demo set with a tiny DCRRG model: AUROC against the
pairwise Mann-Whitney formula on the predictions the command wrote, the linear probe leaves the image encoder as it
was while fine-tuning changes it, the predictions are the saved classifier's, and the table round-trips."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from test_dcrrg import tiny_model

from hf_rrg.cli import main
from hf_rrg.dcrrg.classification import masked_binary_cross_entropy, read_classifier
from hf_rrg.dcrrg.classification_table import ClassificationTable, read_table

IMAGE_PROCESSOR = {"eval_size": [64, 64], "max_views": 1}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A DCRRG run folder as the recipe leaves it after `pretrain` (its model and config.yaml)."""
    run = tmp_path_factory.mktemp("table3") / "run"
    tiny_model().save_pretrained(run / "pretrain" / "model")
    (run / "config.yaml").write_text(yaml.safe_dump({"method": "dcrrg", "image_processor": IMAGE_PROCESSOR}))
    return run


@pytest.fixture(scope="module")
def demo():
    from hf_rrg.data import load_builder

    return load_builder("demo")


def classify(run_dir, mode: str, *extra: str):
    torch.set_num_threads(2)
    args = ["dcrrg", "classify", str(run_dir), "--mode", mode, "--builder", "demo", "--epochs", "2", "--quiet", *extra]
    assert main(args) == 0


def pairwise_auroc(scores: list[float], labels: list[int | None]) -> float | None:
    """P(score of a positive > score of a negative) + 1/2 P(tie), over every positive/negative pair."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    if not pos or not neg:
        return None
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def mean(values):
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def test_linear_probe_table_auroc_by_hand_and_frozen_encoder(run_dir, demo, capsys) -> None:
    from hf_rrg.dcrrg.observations import IGNORE, label_reports, label_tensor
    from hf_rrg.modeling.dcclip import study_image_features
    from hf_rrg.modeling.image_processing_rrg import RRGImageProcessor
    from hf_rrg.modeling.modeling_dcrrg import DCRRGForConditionalGeneration

    classify(run_dir, "linear-probe", "--runs", "2", "--train-fraction", "0.5")
    out = run_dir / "table3" / "linear-probe-50pct"
    assert "| **Mean AUROC** |" in capsys.readouterr().out
    table = json.loads((out / "table3.json").read_text())
    model = DCRRGForConditionalGeneration.from_pretrained(run_dir / "pretrain" / "model").eval()
    names = list(model.config.observation_names)
    assert table["observations"] == names and table["test_samples"] == len(demo["test"]) == 33
    test_labels = label_tensor(label_reports(list(demo["test"]["report"]), names, progress=False))
    per_run_means = []
    for k, run in enumerate(table["runs"]):
        assert run["seed"] == k and run["train_samples"] == round(0.5 * len(demo["train"]))
        assert run["best_epoch"] in (1, 2)
        rows = [json.loads(line) for line in (out / f"run{k + 1}" / "predictions.jsonl").read_text().splitlines()]
        assert [r["id"] for r in rows] == [str(i) for i in demo["test"]["id"]]
        for j, name in enumerate(names):  # the labels are the labeler's (uncertain: null, left out)
            assert [r["labels"][name] for r in rows] == [None if y == IGNORE else y for y in test_labels[:, j].tolist()]
            expected = pairwise_auroc([r["probabilities"][name] for r in rows], [r["labels"][name] for r in rows])
            assert run["auroc"][name] == pytest.approx(expected, abs=1e-12) if expected is not None else (
                run["auroc"][name] is None)  # fmt: skip
        per_run_means.append(mean(run["auroc"].values()))
        assert run["mean_auroc"] == pytest.approx(per_run_means[-1], abs=1e-12)
        # the frozen encoder: what the run kept is the model's own E_img, buffers (BatchNorm statistics) included
        saved = read_classifier(out / f"run{k + 1}")
        original = model.dcclip.visual_extractor.state_dict()
        assert set(saved["image_encoder"]) == {f"visual_extractor.{key}" for key in original}
        for key, value in original.items():
            assert torch.equal(saved["image_encoder"][f"visual_extractor.{key}"], value), key
        # the predictions are sigmoid(W v + b) of the saved head on the model's v
        processor = RRGImageProcessor(**IMAGE_PROCESSOR)
        inputs = processor([list(demo["test"][i]["images"]) for i in range(3)])
        with torch.no_grad():
            v = study_image_features(model.dcclip.visual_extractor, inputs["pixel_values"], inputs["view_mask"])
        head = saved["head"]
        probabilities = torch.sigmoid(v @ head["weight"].T + head["bias"])
        got = torch.tensor([[rows[i]["probabilities"][n] for n in names] for i in range(3)])
        torch.testing.assert_close(got, probabilities, atol=1e-5, rtol=1e-5)
    for name in names:
        assert table["auroc"][name] == pytest.approx(mean([run["auroc"][name] for run in table["runs"]]), abs=1e-12)
    assert table["mean_auroc"] == pytest.approx(mean(per_run_means), abs=1e-12)
    assert table["runs"][0]["auroc"] != table["runs"][1]["auroc"]  # another draw, another head
    # trained through the engine: its logs and checkpoints, and a resume with the same settings trains nothing
    assert (out / "run1" / "logs").is_dir() and any((out / "run1" / "checkpoints").iterdir())
    classify(run_dir, "linear-probe", "--runs", "2", "--train-fraction", "0.5", "--resume")
    again = json.loads((out / "table3.json").read_text())
    assert again["runs"] == table["runs"]
    assert main(["dcrrg", "classify", str(run_dir), "--mode", "linear-probe", "--builder", "demo", "--epochs", "3",
                 "--runs", "2", "--train-fraction", "0.5", "--resume", "--quiet"]) == 1  # fmt: skip
    assert "epochs differ" in capsys.readouterr().err


def test_fine_tune_changes_the_encoder_and_the_table_round_trips(run_dir, demo, tmp_path) -> None:
    from hf_rrg.modeling.modeling_dcrrg import DCRRGForConditionalGeneration

    out = tmp_path / "ft"
    classify(run_dir, "fine-tune", "--runs", "1", "--out", str(out), "--observations", "Cardiomegaly,Pleural Effusion")
    model = DCRRGForConditionalGeneration.from_pretrained(run_dir / "pretrain" / "model")
    saved = read_classifier(out / "run1")
    original = model.dcclip.visual_extractor.state_dict()
    changed = [key for key, value in original.items()
               if not torch.equal(saved["image_encoder"][f"visual_extractor.{key}"], value)]  # fmt: skip
    assert any(".weight" in key for key in changed)  # E_img trained with the head
    assert saved["head"]["weight"].shape == (2, model.dcclip.visual_extractor.num_features)
    table = read_table(out)
    assert table.mode == "fine-tune" and table.observations == ["Cardiomegaly", "Pleural Effusion"]
    assert table.runs[0].train_samples == len(demo["train"]) and table.settings["learning_rate"] == 1e-4
    assert ClassificationTable.from_dict(json.loads(json.dumps(table.to_dict()))) == table
    assert (out / "table3.md").read_text() == table.markdown()
    for name in table.observations:
        value = table.auroc(name)
        cell = "n/a" if value is None else f"{100 * value:.1f}"
        assert f"| {name} | {cell} | {cell} |" in table.markdown()


def test_masked_binary_cross_entropy_by_hand() -> None:
    logits = torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.5, -0.5]])
    labels = torch.tensor([[1, 0, -100], [0, -100, 1]])

    def bce(z: float, y: int) -> float:
        p = 1 / (1 + math.exp(-z))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = (bce(0.5, 1) + bce(-1.0, 0) + bce(0.0, 0) + bce(-0.5, 1)) / 4
    assert masked_binary_cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    assert masked_binary_cross_entropy(logits, torch.full_like(labels, -100)).item() == 0.0


def test_bad_input_is_one_line(run_dir, tmp_path, capsys) -> None:
    assert main(["dcrrg", "classify", str(tmp_path), "--mode", "fine-tune", "--builder", "demo"]) == 1
    assert "neither a DCRRG run folder" in capsys.readouterr().err
    assert main(["dcrrg", "classify", str(run_dir), "--mode", "linear-probe", "--builder", "demo",
                 "--train-fraction", "0"]) == 1  # fmt: skip
    assert "train_fraction must lie in (0, 1]" in capsys.readouterr().err
    assert main(["dcrrg", "classify", str(run_dir), "--mode", "linear-probe", "--builder", "demo",
                 "--observations", "Cardiomegaly,Heart Attack"]) == 1  # fmt: skip
    assert "['Heart Attack'] are not observations of this model" in capsys.readouterr().err
