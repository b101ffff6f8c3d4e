"""XProNet's recipe (labels -> prototypes -> train) on real demo studies: every stage's artifact, resume and single
stage re-runs, labels fed to training batches but not to evaluation (unless the leaky protocol is asked for), the
Table 2 ablation switches, the shipped configs, and export -> load without hf_rrg -> the same generation."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file
from test_hub_fixtures import run_without_hf_rrg

from hf_rrg.data import load_builder
from hf_rrg.data.collators import IndexedStudies, ReportGenerationCollator
from hf_rrg.labeling import CheXpertLabeler
from hf_rrg.modeling.configuration_xpronet import XPRONET_OBSERVATIONS
from hf_rrg.modeling.modeling_xpronet import XProNetForConditionalGeneration
from hf_rrg.training import ConfigError, StageContext, config_from_dict, load_config, run_training
from hf_rrg.xpronet.labels import read_label_file, slot_labels
from hf_rrg.xpronet.prototypes import initialize_prototypes, load_prototype_file
from hf_rrg.xpronet.recipe import fit_hooks

MAX_LEN = 16
TINY_MODEL = {
    "visual_backbone": "test_resnet", "visual_pretrained": False, "d_model": 32, "d_ff": 64, "num_layers": 1,
    "num_heads": 4, "max_seq_length": MAX_LEN, "prototype_visual_dim": 96, "prototype_text_dim": 8,
    "num_prototypes_per_class": 4, "prototype_top_k": 3, "prototype_num_heads": 4,
}  # fmt: skip
IMAGE_PROCESSOR = {"eval_size": 64, "resize_shorter": 72, "crop_size": 64, "max_views": 1}
LOSS_COMPONENTS = ("ce_loss", "visual_contrastive_loss", "text_contrastive_loss", "label_loss")


def _shrink(dataset: datasets.Dataset) -> datasets.Dataset:
    return dataset.map(lambda row: {"images": [im.convert("RGB").resize((72, 72)) for im in row["images"]]})


@pytest.fixture(scope="module")
def splits() -> dict[str, datasets.Dataset]:
    """8 real demo training studies, 2 validation and 3 test studies (72 px, so the runs stay fast)."""
    demo = load_builder("demo")
    return {
        "train": _shrink(demo["train"].select(range(8))),
        "validation": _shrink(demo["validation"].select(range(2))),
        "test": _shrink(demo["test"].select(range(3))),
    }


def tiny_config(**sections):
    data = {
        "method": "xpronet",
        "model": dict(TINY_MODEL),
        "recipe_options": {"text_encoder": None, "progress": False, "prototype_seed": 3},
        "data": {"augment": False},
        "tokenizer": {"cleaner": "r2gen_iu_xray", "min_count": 1},
        "image_processor": IMAGE_PROCESSOR,
        "optimizer": {"lr_visual": 2e-3, "lr_rest": 3e-3, "weight_decay": 0.0},
        "scheduler": {"name": "constant"},
        "training": {"epochs": 2, "batch_size": 8, "eval_batch_size": 8, "patience": None, "seed": 0},
        "evaluation": {"val_metrics": ["bleu"], "test_metrics": ["bleu"]},
        "generation": {"num_beams": 2, "max_length": 8},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return config_from_dict(data)


class Calls:
    """Records the keyword arguments of XProNet's forward (training calls) and generate."""

    def __init__(self) -> None:
        self.train: list[dict] = []
        self.generate: list[dict] = []

    def install(self, patch: pytest.MonkeyPatch) -> None:
        forward, generate = XProNetForConditionalGeneration.forward, XProNetForConditionalGeneration.generate

        @functools.wraps(forward)  # generate() inspects the forward signature
        def spy_forward(model, *args, **kwargs):
            if kwargs.get("labels") is not None:
                self.train.append({k: v for k, v in kwargs.items() if torch.is_tensor(v)})
            return forward(model, *args, **kwargs)

        @functools.wraps(generate)
        def spy_generate(model, *args, **kwargs):
            self.generate.append({k: v for k, v in kwargs.items() if torch.is_tensor(v)})
            return generate(model, *args, **kwargs)

        patch.setattr(XProNetForConditionalGeneration, "forward", spy_forward)
        patch.setattr(XProNetForConditionalGeneration, "generate", spy_generate)


def _mtimes(run: Path) -> dict[str, int]:
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def run(splits, tmp_path_factory) -> dict:
    """The recipe run in two goes: `labels` alone, then `--resume` (prototypes + train, labels kept)."""
    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("xpronet_run")
    config = tiny_config()
    first = run_training(config, folder, datasets=splits, stages=["labels"])
    after_labels = _mtimes(folder)
    calls = Calls()
    with pytest.MonkeyPatch.context() as patch:
        calls.install(patch)
        results = run_training(config, folder, resume=True, datasets=splits)
    return {"dir": folder, "config": config, "first": first, "results": results, "after_labels": after_labels,
            "calls": calls}  # fmt: skip


def test_labels_alone_then_resume_runs_only_the_unfinished_stages(run, splits) -> None:
    folder = run["dir"]
    assert list(run["first"]) == ["labels"]
    assert sorted(run["after_labels"]) == ["config.yaml", "labels.json", "stages/labels.json"]  # only labels ran
    now = _mtimes(folder)
    assert now["labels.json"] == run["after_labels"]["labels.json"]  # resume did not redo the labels
    assert now["stages/labels.json"] == run["after_labels"]["stages/labels.json"]
    assert list(run["results"]) == ["labels", "prototypes", "train"]
    for name in ("prototypes.safetensors", "metrics.json", "predictions.jsonl", "model/model.safetensors",
                 "model/config.json", "model/tokenizer.json", "stages/prototypes.json", "stages/train.json"):  # fmt: skip
        assert (folder / name).is_file(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["method"] == "xpronet" and metrics["epochs_trained"] == 2
    assert metrics["recipe"]["labels_at_evaluation"].startswith("predicted")
    assert metrics["recipe"]["prototype_initialisation"] == "kmeans"
    assert json.loads((folder / "model" / "config.json").read_text())["model_type"] == "xpronet"
    predictions = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert [row["id"] for row in predictions] == list(splits["test"]["id"])
    assert [row["reference"] for row in predictions] == list(splits["test"]["report"])


def test_a_single_stage_reruns_alone_and_a_finished_run_does_nothing(run, splits, tmp_path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(run["dir"], folder)
    before, (pm, metadata) = _mtimes(folder), load_prototype_file(folder / "prototypes.safetensors")
    results = run_training(run["config"], folder, datasets=splits, stages=["prototypes"])
    after = _mtimes(folder)
    assert after["prototypes.safetensors"] != before["prototypes.safetensors"]  # rewritten ...
    again, again_metadata = load_prototype_file(folder / "prototypes.safetensors")
    assert torch.equal(again, pm) and again_metadata == metadata  # ... with the same matrix (deterministic)
    unchanged = {k: v for k, v in before.items() if k not in ("prototypes.safetensors", "stages/prototypes.json")}
    assert {k: after[k] for k in unchanged} == unchanged
    assert list(results) == ["labels", "prototypes", "train"]  # earlier/later results handed on
    run_training(run["config"], folder, resume=True, datasets=splits)
    assert _mtimes(folder) == after  # everything finished: nothing runs again
    with pytest.raises(ValueError, match=r"has no stage\(s\) \['protos'\]; its stages are \['labels', 'prototypes'"):
        run_training(run["config"], folder, datasets=splits, stages=["protos"])


def test_label_file_holds_the_labelers_slots_for_the_train_split_only(run, splits) -> None:
    label_file = read_label_file(run["dir"] / "labels.json")
    train_ids = [str(i) for i in splits["train"]["id"]]
    assert sorted(label_file.labels) == sorted(train_ids)  # no validation/test labels: nothing to leak
    assert label_file.observation_names == list(XPRONET_OBSERVATIONS)
    labeler = CheXpertLabeler()
    for sample_id, report in zip(train_ids, splits["train"]["report"]):
        assert label_file.labels[sample_id] == slot_labels(labeler.label(report).values)


def test_prototype_file_is_the_kmeans_of_the_backbone_features(run, splits) -> None:
    from hf_rrg.modeling.image_processing_rrg import RRGImageProcessor
    from hf_rrg.modeling.visual_extractor import VisualExtractor

    tensor, metadata = load_prototype_file(run["dir"] / "prototypes.safetensors")
    assert tensor.shape == (14, 4, 96 + 8)
    assert torch.count_nonzero(tensor[..., 96:]) == 0  # text_encoder null: image-only prototypes
    assert torch.count_nonzero(tensor[..., :96]) > 0
    assert metadata["settings"]["seed"] == 3 and metadata["settings"]["text_encoder"] is None
    torch.manual_seed(3)
    extractor = VisualExtractor("test_resnet")
    expected = initialize_prototypes(
        extractor, splits["train"], RRGImageProcessor(**IMAGE_PROCESSOR), read_label_file(run["dir"] / "labels.json"),
        None, num_prototypes_per_class=4, text_dim=8, seed=3, progress=False,
    )  # fmt: skip
    torch.testing.assert_close(tensor, expected.prototypes)


def test_the_fresh_model_starts_from_the_prototype_file(run) -> None:
    context = StageContext(config=run["config"], run_dir=run["dir"])
    hooks = fit_hooks(context)
    model = XProNetForConditionalGeneration(load_config_model(run["config"], vocab_size=30))  # a random PM ...
    hooks.prepare_model(model)  # ... replaced by the K-means one
    tensor, _ = load_prototype_file(run["dir"] / "prototypes.safetensors")
    assert torch.equal(model.prototype_network.prototypes.detach(), tensor)
    assert hooks.columns == ("id",) and hooks.eval_fields is None


def load_config_model(config, **extra):
    from hf_rrg.modeling.configuration_xpronet import XProNetConfig

    return XProNetConfig(**{**config.model, **extra})


def test_training_batches_carry_the_label_file_rows_and_evaluation_does_not(run, splits) -> None:
    calls = run["calls"]
    label_file = read_label_file(run["dir"] / "labels.json")
    expected = sorted(label_file.tensor(splits["train"]["id"]).tolist())
    assert len(calls.train) == 2  # 2 epochs x one batch of 8
    for call in calls.train:
        assert sorted(call["observation_labels"].tolist()) == expected
    # validation x 2 epochs + test, then the export writes the reports of its example images (the widget's)
    assert len(calls.generate) == 4
    assert all("observation_labels" not in call for call in calls.generate)  # predicted labels only


def test_every_loss_component_is_logged_and_sums_to_the_loss(run) -> None:
    records = [json.loads(line) for line in (run["dir"] / "logs" / "train_steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        assert all(name in record for name in LOSS_COMPONENTS), record
        total = (record["ce_loss"] + 1.0 * record["visual_contrastive_loss"] + 0.1 * record["text_contrastive_loss"]
                 + 1.0 * record["label_loss"])  # fmt: skip
        assert record["loss"] == pytest.approx(total, rel=1e-5)
    epochs = [json.loads(line) for line in (run["dir"] / "logs" / "epochs.jsonl").read_text().splitlines()]
    assert all(f"train/{name}" in epochs[0] for name in LOSS_COMPONENTS)


# --------------------------------------------------------------------------------------- ablations, protocol


DEMO_TINY = [f"model.{key}={json.dumps(value)}" for key, value in TINY_MODEL.items()] + [
    f"image_processor.{key}={value}" for key, value in IMAGE_PROCESSOR.items()
] + [
    "recipe_options.progress=false", "tokenizer.min_count=1", "training.epochs=1", "training.batch_size=4",
    "training.eval_batch_size=4", "generation.num_beams=2", "generation.max_length=6", "evaluation.val_metrics=[bleu]",
    "evaluation.test_metrics=[bleu]", "data.augment=false",
]  # fmt: skip


@pytest.mark.parametrize(
    "switch",
    [
        "recipe_options.use_prototype_init=false",
        "model.contrastive_improved=false",
        "model.use_prototype_network=false",
    ],
)
def test_table_2_ablation_switches_parse_and_train(switch, splits, tmp_path) -> None:
    config = load_config("xpronet_demo", [switch, *DEMO_TINY])
    key, value = switch.split("=")
    section, name = key.split(".")
    assert (getattr(config, section)[name] if isinstance(getattr(config, section), dict) else None) is False
    results = run_training(config, tmp_path, datasets=splits)
    records = [json.loads(line) for line in (tmp_path / "logs" / "train_steps.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["loss"] == r["loss"] for r in records)  # 8 studies / batch 4, finite
    model_config = json.loads((tmp_path / "model" / "config.json").read_text())
    weights = load_file(tmp_path / "model" / "model.safetensors")
    recipe = json.loads((tmp_path / "metrics.json").read_text())["recipe"]
    if name == "use_prototype_init":
        assert "w/o PI" in results["prototypes"]["skipped"] and not (tmp_path / "prototypes.safetensors").exists()
        assert recipe["prototype_initialisation"] == "random"
        assert all(n in records[0] for n in LOSS_COMPONENTS)
    elif name == "contrastive_improved":
        assert model_config["contrastive_improved"] is False and recipe["contrastive_improved"] is False
        assert (tmp_path / "prototypes.safetensors").is_file() and all(n in records[0] for n in LOSS_COMPONENTS)
    else:
        assert model_config["use_prototype_network"] is False
        assert "skipped" in results["labels"] and "skipped" in results["prototypes"]
        assert not (tmp_path / "labels.json").exists() and not (tmp_path / "prototypes.safetensors").exists()
        assert set(records[0]) & {"loss", *LOSS_COMPONENTS} == {"loss", "ce_loss"}  # the plain Transformer
        assert not any("prototype" in key for key in weights)
        assert recipe["prototype_network"] is False


def test_reference_label_protocol_feeds_the_reference_labels_at_evaluation(splits, tmp_path) -> None:
    config = tiny_config(training={"epochs": 1}, evaluation={"use_reference_labels": True})
    calls = Calls()
    with pytest.MonkeyPatch.context() as patch:
        calls.install(patch)
        run_training(config, tmp_path, datasets=splits)
    label_file = read_label_file(tmp_path / "labels.json")
    assert set(label_file.splits) == {"train", "validation", "test"}
    validation, test, _ = calls.generate  # one batch each, then the export's example images
    assert torch.equal(validation["observation_labels"], label_file.tensor(splits["validation"]["id"]))
    assert torch.equal(test["observation_labels"], label_file.tensor(splits["test"]["id"]))
    recipe = json.loads((tmp_path / "metrics.json").read_text())["recipe"]
    assert recipe["labels_at_evaluation"].startswith("reference") and "leak" in recipe["labels_at_evaluation"]


def test_shipped_configs_hold_the_papers_settings() -> None:
    iu, mimic, demo = (load_config(f"xpronet_{name}") for name in ("iu_xray", "mimic_cxr", "demo"))
    m = iu.model
    assert (iu.training.epochs, iu.training.batch_size, iu.training.seed) == (30, 16, 7580)
    assert (iu.optimizer.lr_visual, iu.optimizer.lr_rest) == (1e-3, 2e-3)
    assert (iu.scheduler.name, iu.scheduler.step_size, iu.scheduler.gamma) == ("step", 10, 0.8)
    assert iu.generation.num_beams == 3 and m["prototype_top_k"] == 15 and m["num_prototypes_per_class"] == 20
    assert (m["prototype_visual_dim"], m["prototype_text_dim"]) == (2048, 768)
    assert (m["visual_contrastive_weight"], m["text_contrastive_weight"], m["contrastive_margin"]) == (1.0, 0.1, 0.4)
    assert "bert" in iu.recipe_options["text_encoder"] and iu.evaluation.use_reference_labels is False
    assert (mimic.training.batch_size, mimic.optimizer.lr_visual, mimic.optimizer.lr_rest) == (64, 5e-5, 1e-4)
    assert (mimic.scheduler.step_size, mimic.scheduler.gamma) == (3, 0.8)
    assert (mimic.model["max_seq_length"], mimic.tokenizer.min_count) == (100, 10)
    assert demo.recipe_options["text_encoder"] is None and demo.model["visual_pretrained"] is False
    assert demo.model["prototype_visual_dim"] == 512  # resnet18's feature size, checked by the prototypes stage


def test_config_mistakes_are_named(splits, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"recipe_options\.text_encodr.*valid keys of recipe_options"):
        run_training(tiny_config(recipe_options={"text_encodr": "bert"}), tmp_path / "a", datasets=splits)
    wrong_dim = tiny_config(model={"prototype_visual_dim": 2048})
    run_training(wrong_dim, tmp_path / "b", datasets=splits, stages=["labels"])
    with pytest.raises(ConfigError, match=r"prototype_visual_dim is 2048 but backbone 'test_resnet' gives 96-d"):
        run_training(wrong_dim, tmp_path / "b", datasets=splits, stages=["prototypes"])
    with pytest.raises(FileNotFoundError, match="run the prototypes stage first"):
        run_training(tiny_config(), tmp_path / "b", datasets=splits, stages=["train"])
    plain = config_from_dict({"method": "r2gencmn", "evaluation": {"use_reference_labels": True}})
    with pytest.raises(ConfigError, match="use_reference_labels applies to models that read report-derived labels"):
        run_training(plain, tmp_path / "c", datasets=splits)
    (tmp_path / "partial.json").write_text(json.dumps({
        "format": "hf-rrg/xpronet-labels/v1", "observation_names": list(XPRONET_OBSERVATIONS), "policy": {},
        "labels": {str(splits["train"]["id"][0]): [0] * 13 + [1]},
    }))  # fmt: skip
    partial = tiny_config(recipe_options={"label_file": str(tmp_path / "partial.json")})
    with pytest.raises(ValueError, match=r"lacks 7 of the 8 train sample ids"):
        run_training(partial, tmp_path / "d", datasets=splits)


def test_collator_hook_adds_fields_and_names_missing_columns(splits) -> None:
    from hf_rrg.modeling.image_processing_rrg import RRGImageProcessor

    with pytest.raises(ValueError, match=r"no column\(s\) \['study_uid'\]"):
        IndexedStudies(splits["train"], extra_columns=("study_uid",))
    items = IndexedStudies(splits["train"], extra_columns=("id",))
    assert items[2]["id"] == splits["train"]["id"][2]

    def hook(examples):
        return {"doubled": torch.tensor([2 * e["index"] for e in examples])}

    collate = ReportGenerationCollator(RRGImageProcessor(**IMAGE_PROCESSOR), None, extra_fields=hook)
    batch = collate([items[1], items[3]])
    assert batch["doubled"].tolist() == [2, 6] and batch["pixel_values"].shape[:2] == (2, 1)
    def clashing(examples):
        return {"view_mask": torch.zeros(len(examples))}

    clash = ReportGenerationCollator(RRGImageProcessor(**IMAGE_PROCESSOR), None, extra_fields=clashing)
    with pytest.raises(ValueError, match=r"extra_fields returned \['view_mask'\]"):
        clash([items[0]])


# ------------------------------------------------------------------------------------------------------- export


def test_export_loads_without_hf_rrg_and_generates_the_same(run, splits, tmp_path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from hf_rrg.hub import export_model

    out = export_model(run["dir"], tmp_path / "export", repo_id="hf-rrg-test/xpronet-tiny")
    for name in ("modeling_xpronet.py", "configuration_xpronet.py", "prototype_network.py", "losses.py"):
        assert (out / name).is_file(), name
    card = (out / "README.md").read_text()  # the card says which labels the test scores were made with
    assert "- labels at evaluation: predicted: the model's label head, from the image alone" in card
    images = []
    for i, study in enumerate(splits["test"]["images"]):
        path = tmp_path / f"study{i}.png"
        study[0].save(path)
        images.append(str(path))
    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    assert isinstance(model, XProNetForConditionalGeneration)
    inputs = processor(images=[[image] for image in images])
    with torch.no_grad():
        beam = model.generate(**inputs).tolist()
        greedy = model.generate(**inputs, num_beams=1).tolist()
        predicted = model(**inputs, decoder_input_ids=torch.tensor([[1, 5, 9]] * len(images))).observation_labels
    assert all(processor.batch_decode(beam, skip_special_tokens=True))
    code = f"""
import json, torch
from transformers import AutoModelForImageTextToText, AutoProcessor
out, images = {str(out)!r}, {images!r}
model = AutoModelForImageTextToText.from_pretrained(out, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
inputs = processor(images=[[image] for image in images])
with torch.no_grad():
    beam = model.generate(**inputs).tolist()
    greedy = model.generate(**inputs, num_beams=1).tolist()
    predicted = model(**inputs, decoder_input_ids=torch.tensor([[1, 5, 9]] * len(images))).observation_labels
print(json.dumps({{"module": type(model).__module__, "beam": beam, "greedy": greedy,
                  "predicted": predicted.tolist()}}))
"""
    remote = run_without_hf_rrg(code, tmp_path)
    assert remote["module"].startswith("transformers_modules.")
    assert remote["beam"] == beam and remote["greedy"] == greedy
    assert remote["predicted"] == predicted.tolist()  # the label head's labels, no report involved


def test_cli_runs_one_stage_of_a_config_file(tmp_path) -> None:
    import yaml

    from hf_rrg.cli import build_parser

    config = tiny_config().to_dict()
    config["data"].update(builder="demo", max_train_samples=5)
    path = tmp_path / "xpronet_tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    args = build_parser().parse_args(["train", str(path), "--output-dir", str(out), "--stage", "labels"])
    assert args.stages == ["labels"]
    assert args.func(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "labels.json", "stages"]  # only labels ran
    label_file = read_label_file(out / "labels.json")
    assert label_file.splits["train"] == list(load_builder("demo")["train"]["id"][:5])
