"""ITHN training on real demo studies: a tiny ITHN-R2GenCMN and ITHN-XProNet train with every loss term finite and
decreasing and memorise 8 reports; the recipe (labels -> prototypes -> mine -> train) feeds each training batch its
neighbours and the epoch; the shipped configs hold the paper's settings; the ITHN model and its plain backbone export
and load without hf_rrg, generating the same reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import datasets
import pytest
import torch
from test_hub_fixtures import run_without_hf_rrg

from hf_rrg.data import load_builder
from hf_rrg.data.collators import IndexedStudies, ReportGenerationCollator, shifted_targets
from hf_rrg.ithn.mining import mine_hard_negatives, read_neighbour_file
from hf_rrg.ithn.recipe import NeighbourBatch
from hf_rrg.modeling.configuration_ithn import ITHNConfig
from hf_rrg.modeling.modeling_ithn import ITHNForConditionalGeneration
from hf_rrg.training import config_from_dict, load_config, run_training

CONFIGS = Path(__file__).resolve().parents[1] / "training_scripts" / "configs"
SIZE = 32
BACKBONES = {
    "r2gencmn": {"cmm_size": 32, "cmm_dim": 32, "topk": 8},
    "xpronet": {"prototype_visual_dim": 96, "prototype_text_dim": 8, "num_prototypes_per_class": 4,
                "prototype_top_k": 4, "prototype_num_heads": 4},
}  # fmt: skip


def tiny_backbone(kind: str, max_len: int) -> dict:
    return {"model_type": kind, "visual_backbone": "test_resnet", "visual_pretrained": False, "d_model": 32,
            "d_ff": 64, "num_layers": 1, "num_heads": 4, "max_seq_length": max_len, **BACKBONES[kind]}  # fmt: skip


def _shrink(dataset: datasets.Dataset) -> datasets.Dataset:
    return dataset.map(lambda row: {"images": [im.convert("RGB").resize((SIZE, SIZE)) for im in row["images"]]})


@pytest.fixture(scope="module")
def splits() -> dict[str, datasets.Dataset]:
    """8 real demo training studies, 2 validation and 3 test studies (32 px, so the runs stay fast)."""
    demo = load_builder("demo")
    return {
        "train": _shrink(demo["train"].select(range(8))),
        "validation": _shrink(demo["validation"].select(range(2))),
        "test": _shrink(demo["test"].select(range(3))),
    }


# ---------------------------------------------------------------------------------- training and memorisation


@pytest.mark.parametrize("kind", ["r2gencmn", "xpronet"])
def test_tiny_ithn_trains_every_term_down_and_memorises_eight_reports(kind: str, splits) -> None:
    """Plain loop over the 8 studies with their mined nearest neighbours (projection synthesis, λ rising each
    step as if each step were 2 epochs); then generation from the images alone reproduces the reports."""
    from hf_rrg import RRGImageProcessor, RRGTokenizer
    from hf_rrg.metrics import bleu
    from hf_rrg.xpronet.labels import make_label_file

    torch.set_num_threads(2)
    max_len = 16
    train = splits["train"]
    ids, reports = list(train["id"]), list(train["report"])
    mined = mine_hard_negatives(ids, reports, top_k=1, progress=False)
    neighbour = [ids.index(mined.neighbours[i][0][0]) for i in ids]
    assert all(n != i for i, n in enumerate(neighbour))
    tokenizer = RRGTokenizer.from_reports(reports, cleaner="r2gen_iu_xray", min_count=1)
    inputs = RRGImageProcessor(eval_size=(SIZE, SIZE), max_views=1)(list(train["images"]))
    batch = dict(**inputs, **shifted_targets(tokenizer, reports, max_len))
    batch.update({f"negative_{key}": value[neighbour] for key, value in list(batch.items())})
    if kind == "xpronet":
        observations = make_label_file(train, progress=False).tensor(ids)
        batch.update(observation_labels=observations, negative_observation_labels=observations[neighbour])
    backbone = {**tiny_backbone(kind, max_len), "dropout": 0.0, "visual_dropout": 0.0}
    torch.manual_seed(0)
    model = ITHNForConditionalGeneration(ITHNConfig(backbone_config=backbone, vocab_size=len(tokenizer), embed_dim=32))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    history: list[dict[str, float]] = []
    for step in range(150):  # xavier init (the official one): at 90 steps one seed/thread count still had a loss spike
        out = model(**batch, epoch=2 * step)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        history.append({key: value.item() for key, value in out.items() if key.endswith("_loss") or key == "loss"})
    terms = {"loss", "ce_loss", "clip_loss", "cs_loss", "backbone_loss"}
    if kind == "xpronet":
        terms |= {"visual_contrastive_loss", "text_contrastive_loss", "label_loss"}
    assert set(history[0]) == terms
    for term in terms:
        values = [record[term] for record in history]
        assert all(math.isfinite(v) for v in values), term
        first, last = sum(values[:5]) / 5, sum(values[-5:]) / 5
        assert last < first, (term, first, last)
    # InfoNCE over the N x N pairs is ln N at chance: the pairs are told apart well below it
    assert history[-1]["ce_loss"] < 0.05 and history[-1]["clip_loss"] < 0.5 * math.log(len(ids))
    model.eval()
    references = [[tokenizer.normalize_report(r, max_tokens=max_len - 1)] for r in reports]
    for beams in (1, 3):  # the targets hold max_len - 1 words; the default (max_seq_length new tokens) writes one more
        ids = model.generate(**inputs, num_beams=beams, max_new_tokens=max_len - 1)
        predictions = tokenizer.batch_decode(ids, skip_special_tokens=True)
        assert bleu(predictions, references)["bleu_4"] >= 0.9, (beams, predictions, references)


# --------------------------------------------------------------------------------------------------- the recipe


def tiny_config(kind: str = "r2gencmn", **sections):
    options = {"encoder": "tfidf", "top_k": 3, "progress": False}
    if kind == "xpronet":
        options["backbone_options"] = {"text_encoder": None, "progress": False, "prototype_seed": 3}
    data = {
        "method": "ithn",
        "model": {"backbone_config": tiny_backbone(kind, 12), "embed_dim": 16},
        "recipe_options": options,
        "data": {"augment": False},
        "tokenizer": {"cleaner": "r2gen_iu_xray", "min_count": 1},
        "image_processor": {"eval_size": SIZE, "resize_shorter": SIZE, "crop_size": SIZE, "max_views": 1},
        "optimizer": {"lr_visual": 2e-3, "lr_rest": 3e-3, "weight_decay": 0.0},
        "scheduler": {"name": "constant"},
        "training": {"epochs": 2, "batch_size": 4, "eval_batch_size": 8, "patience": None, "seed": 0},
        "evaluation": {"val_metrics": ["bleu"], "test_metrics": ["bleu"]},
        "generation": {"num_beams": 2, "max_length": 8},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return config_from_dict(data)


@pytest.fixture(scope="module")
def runs(splits, tmp_path_factory) -> dict:
    """The recipe for both backbones; set_epoch calls and the neighbour batches are recorded."""
    torch.set_num_threads(2)
    epochs: list[float] = []
    batches: list[tuple[list[str], dict]] = []
    set_epoch, call = ITHNForConditionalGeneration.set_epoch, NeighbourBatch.__call__

    def spy_set_epoch(model, epoch):
        epochs.append(epoch)
        return set_epoch(model, epoch)

    def spy_call(hook, items):
        fields = call(hook, items)
        batches.append(([str(item["id"]) for item in items], fields))
        return fields

    out = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ITHNForConditionalGeneration, "set_epoch", spy_set_epoch)
        patch.setattr(NeighbourBatch, "__call__", spy_call)
        for kind in ("r2gencmn", "xpronet"):
            folder = tmp_path_factory.mktemp(f"ithn_{kind}")
            epochs.clear()
            batches.clear()
            results = run_training(tiny_config(kind), folder, datasets=splits)
            out[kind] = {"dir": folder, "results": results, "epochs": list(epochs), "batches": list(batches)}
    return out


def test_recipe_stages_write_their_artifacts(runs, splits) -> None:
    plain, xpronet = runs["r2gencmn"], runs["xpronet"]
    assert plain["results"]["labels"] == {"skipped": "backbone 'r2gencmn' has no labels stage"}
    assert "skipped" in plain["results"]["prototypes"] and not (plain["dir"] / "labels.json").exists()
    assert (xpronet["dir"] / "labels.json").is_file() and (xpronet["dir"] / "prototypes.safetensors").is_file()
    assert xpronet["results"]["labels"]["backbone"] == "xpronet"
    for run in runs.values():
        mined = read_neighbour_file(run["dir"] / "neighbours.json")
        assert set(mined.neighbours) == set(splits["train"]["id"]) and mined.metadata["encoder"] == "tfidf"
        recipe = json.loads((run["dir"] / "metrics.json").read_text())["recipe"]
        assert recipe["recipe"] == "ithn" and recipe["synthesis"] == "projection"
        assert recipe["neighbours"].startswith("nearest of the 3 mined with tfidf")
        assert run["epochs"] == [1.0, 2.0]  # λ = 1 − exp(−α·epoch), epochs counted from 1
    assert json.loads((xpronet["dir"] / "metrics.json").read_text())["recipe"]["backbone_prototype_network"] is True


def test_every_loss_component_is_logged_finite_and_sums_to_eq_13(runs) -> None:
    for kind, run in runs.items():
        lines = (run["dir"] / "logs" / "train_steps.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert len(records) == 4  # 2 epochs x 2 batches of 4
        for record in records:
            assert all(math.isfinite(record[k]) for k in ("loss", "ce_loss", "clip_loss", "cs_loss", "backbone_loss"))
            expected = record["backbone_loss"] + 0.1 * record["clip_loss"] + 0.2 * record["cs_loss"]
            assert record["loss"] == pytest.approx(expected, rel=1e-5)
            if kind == "xpronet":
                backbone = (record["ce_loss"] + record["visual_contrastive_loss"]
                            + 0.1 * record["text_contrastive_loss"] + record["label_loss"])  # fmt: skip
                assert record["backbone_loss"] == pytest.approx(backbone, rel=1e-5)


def test_training_batches_carry_each_studys_nearest_neighbour(runs, splits) -> None:
    from hf_rrg import RRGImageProcessor, RRGTokenizer

    train = splits["train"]
    reports, rows = dict(zip(train["id"], train["report"])), {i: r for r, i in enumerate(train["id"])}
    for kind, run in runs.items():
        mined = read_neighbour_file(run["dir"] / "neighbours.json")
        tokenizer = RRGTokenizer.from_pretrained(run["dir"] / "tokenizer")
        processor = RRGImageProcessor(eval_size=SIZE, max_views=1)
        assert len(run["batches"]) == 4
        for ids, fields in run["batches"]:
            nearest = [mined.neighbours[i][0][0] for i in ids]
            expected = shifted_targets(tokenizer, [reports[n] for n in nearest], 12)
            assert torch.equal(fields["negative_labels"], expected["labels"])
            assert torch.equal(fields["negative_decoder_input_ids"], expected["decoder_input_ids"])
            pixels = processor([train[rows[n]]["images"] for n in nearest])["pixel_values"]
            assert torch.equal(fields["negative_pixel_values"], pixels)
            if kind == "xpronet":
                shape = (len(ids), 14)
                assert fields["negative_observation_labels"].shape == fields["observation_labels"].shape == shape
            else:
                assert "observation_labels" not in fields


def test_mochi_draws_among_the_top_k_per_study_and_epoch(splits, tmp_path) -> None:
    from hf_rrg import RRGImageProcessor, RRGTokenizer

    train = splits["train"]
    mined = mine_hard_negatives(train["id"], train["report"], top_k=4, progress=False)
    tokenizer = RRGTokenizer.from_reports(train["report"], cleaner="r2gen_iu_xray", min_count=1)
    collator = ReportGenerationCollator(RRGImageProcessor(eval_size=SIZE, max_views=1), tokenizer, max_length=12)
    hook = NeighbourBatch(train, mined, collator, choice="random_top_k", sample_top_k=3, seed=5)
    items = [IndexedStudies(train, extra_columns=("id",))[i] for i in range(8)]
    draws = {}
    for epoch in range(6):
        hook.epoch = epoch
        draws[epoch] = [hook.neighbour_of(item) for item in items]
        assert draws[epoch] == [hook.neighbour_of(item) for item in items]  # reproducible
        for item, drawn in zip(items, draws[epoch]):
            assert drawn in [n for n, _ in mined.neighbours[item["id"]][:3]]
    assert len({tuple(d) for d in draws.values()}) > 1  # a different draw in another epoch
    assert len({d for per_epoch in draws.values() for d in per_epoch[:1]}) > 1
    nearest = NeighbourBatch(train, mined, collator, choice="nearest")
    assert [nearest.neighbour_of(item) for item in items] == [mined.neighbours[i["id"]][0][0] for i in items]
    from hf_rrg.ithn.recipe import neighbour_choice

    assert neighbour_choice(tiny_config(model={"synthesis": "mochi"})) == "random_top_k"
    assert neighbour_choice(tiny_config()) == "nearest"


def test_shipped_configs_hold_the_papers_settings() -> None:
    for name, backbone in (("ithn_r2gencmn_iu_xray", "r2gencmn"), ("ithn_xpronet_iu_xray", "xpronet"),
                           ("ithn_r2gencmn_mimic_cxr", "r2gencmn"), ("ithn_xpronet_mimic_cxr", "xpronet"),
                           ("ithn_demo", None)):  # fmt: skip
        config = load_config(CONFIGS / f"{name}.yaml")
        model = ITHNConfig(**config.model)
        assert config.method == "ithn" and (backbone is None or model.backbone_type == backbone), name
        assert (model.hardness_alpha, model.clip_loss_weight, model.cs_loss_weight) == (0.01, 0.1, 0.2), name
        assert model.synthesis == "projection" and model.embed_dim == (512 if backbone else model.embed_dim), name
        if backbone is not None:
            assert config.training.patience == 26 and model.visual_backbone == "resnet101.tv_in1k", name  # early_stop 25
            assert config.recipe_options["encoder"] == "UCSD-VA-health/RadBERT-RoBERTa-4m", name
        dataset = "mimic_cxr" if "mimic" in name else ("demo" if name == "ithn_demo" else "iu_xray")
        length = 100 if name == "ithn_xpronet_mimic_cxr" else 60  # the official ITHN MIMIC-CXR script: 60
        assert config.data.builder == dataset and model.max_seq_length == length, name


def test_config_mistakes_are_named(splits, tmp_path) -> None:
    from hf_rrg.training import ConfigError

    with pytest.raises(ConfigError, match="recipe_options.neighbour_choice must be one of"):
        run_training(tiny_config(recipe_options={"neighbour_choice": "farthest"}), tmp_path / "a", datasets=splits)
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['recipe_options.topk'\]"):
        run_training(tiny_config(recipe_options={"topk": 3}), tmp_path / "b", datasets=splits)
    with pytest.raises(ConfigError, match="backbone_options .* are not used"):
        run_training(tiny_config(recipe_options={"backbone_options": {"text_encoder": None}}), tmp_path / "c",
                     datasets=splits)  # fmt: skip
    with pytest.raises(FileNotFoundError, match="run the mine stage first"):
        run_training(tiny_config(), tmp_path / "d", datasets=splits, stages=["train"])


# ------------------------------------------------------------------------------------------------------- export


def test_ithn_and_backbone_exports_load_without_hf_rrg_and_generate_the_same(runs, splits, tmp_path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from hf_rrg.hub import export_model
    from hf_rrg.ithn.export import export_backbone_run
    from hf_rrg.modeling import R2GenCMNForConditionalGeneration

    run = runs["r2gencmn"]["dir"]
    ithn = export_model(run, tmp_path / "ithn", repo_id="hf-rrg-test/ithn-tiny")
    plain = export_backbone_run(run, tmp_path / "plain")
    for name in ("modeling_ithn.py", "configuration_ithn.py", "ithn_losses.py", "modeling_r2gencmn.py"):
        assert (ithn / name).is_file(), name
    assert not (plain / "modeling_ithn.py").exists()
    card = (ithn / "README.md").read_text()
    assert "Increasingly Hard Negatives" in card and "- synthesis: projection" in card
    images = []
    for i, study in enumerate(splits["test"]["images"]):
        path = tmp_path / f"study{i}.png"
        study[0].save(path)
        images.append(str(path))
    model = AutoModelForImageTextToText.from_pretrained(ithn).eval()
    backbone = AutoModelForImageTextToText.from_pretrained(plain).eval()
    assert isinstance(model, ITHNForConditionalGeneration) and type(backbone) is R2GenCMNForConditionalGeneration
    inputs = AutoProcessor.from_pretrained(ithn)(images=[[image] for image in images])
    with torch.no_grad():
        beam = model.generate(**inputs).tolist()
        assert backbone.generate(**inputs).tolist() == beam
        assert len(beam[0]) > 2  # not an immediate <eos>
    code = f"""
import json, torch
from transformers import AutoModelForImageTextToText, AutoProcessor
images = {images!r}
result = {{}}
for name, folder in (("ithn", {str(ithn)!r}), ("plain", {str(plain)!r})):
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    with torch.no_grad():
        result[name] = {{"module": type(model).__module__, "class": type(model).__name__,
                         "beam": model.generate(**processor(images=[[i] for i in images])).tolist()}}
print(json.dumps(result))
"""
    remote = run_without_hf_rrg(code, tmp_path)
    assert remote["ithn"]["module"].startswith("transformers_modules.")
    assert remote["ithn"]["class"] == "ITHNForConditionalGeneration"
    assert remote["plain"]["class"] == "R2GenCMNForConditionalGeneration"
    assert remote["ithn"]["beam"] == beam and remote["plain"]["beam"] == beam
