"""DCRRG's four steps on real demo data: a tiny model runs pretrain -> describe -> prompt (P-Tuning v2 via PEFT),
its step-4 model memorises 8 reports, the stages resume/re-run alone, and the exported model loads as remote code
without hf_rrg and writes the same reports."""

from __future__ import annotations

import json

import pytest
import torch

from hf_rrg.training.config import TrainingConfig, config_from_dict
from hf_rrg.training.recipes import run_training

MODEL = dict(
    visual_backbone="test_resnet", visual_pretrained=False, projection_dim=32, d_model=64, d_ff=128, num_heads=4,
    dropout=0.0, max_seq_length=16, description_max_length=16, text_encoder_config=dict(
        hidden_size=32, num_attention_heads=4, num_hidden_layers=1, intermediate_size=64, max_position_embeddings=128),
)  # fmt: skip


def tiny_config(**options) -> TrainingConfig:
    return config_from_dict({
        "method": "dcrrg",
        "model": MODEL,
        "recipe_options": {"step1_epochs": 2, "step2_epochs": 2, "step3_epochs": 20, "step4_epochs": 150,
                           "pretrain_batch_size": 32, "decoder_batch_size": 8, "lr": 1e-3, "decoder_lr": 5e-3,
                           "num_virtual_tokens": 8, "text_max_length": 48, "progress": False, "seed": 0,
                           "checkpoint_every": 50, **options},
        "tokenizer": {"cleaner": "r2gen_iu_xray", "min_count": 1},
        "image_processor": {"eval_size": [64, 64], "max_views": 1},
        "training": {"eval_batch_size": 8, "seed": 0, "cpu": True},
        "evaluation": {"test_metrics": ["bleu"]},
        "generation": {"num_beams": 3},
    })  # fmt: skip


@pytest.fixture(scope="module")
def eight():
    from hf_rrg.data import load_builder

    train = load_builder("demo")["train"].select(range(8))
    small = train.map(lambda row: {"images": [im.convert("RGB").resize((64, 64)) for im in row["images"]]})
    return {"train": small, "validation": small, "test": small}


@pytest.fixture(scope="module")
def run(eight, tmp_path_factory):
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("dcrrg_run")
    results = run_training(tiny_config(), out, datasets=eight)
    return {"dir": out, "results": results}


def test_four_steps_run_and_step4_memorises_eight_reports(run) -> None:
    results, out = run["results"], run["dir"]
    assert set(results) == {"pretrain", "describe", "prompt"}
    history = results["pretrain"]["history"]
    assert [h["step"] for h in history] == ["step1", "step1", "step2", "step2"]
    assert results["describe"]["instances"] > 8  # several described observations per report, two views each
    assert results["prompt"]["finetuning"] == "prompt"
    assert (out / "prompt" / "adapter" / "adapter_model.safetensors").is_file()
    card = (out / "prompt" / "adapter" / "README.md").read_text()  # the adapter's own card, not PEFT's template
    assert "P-Tuning v2" in card and "BASE_MODEL" in card and str(out) not in card
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["bleu_4"] >= 0.9, metrics


def test_trainable_parameters_of_step4_are_prefix_and_head(run) -> None:
    d, tokens, vocab = 64, 8, json.loads((run["dir"] / "model" / "config.json").read_text())["vocab_size"]
    prefix = tokens * d + (d * d + d) + (d * 2 * 2 * d + 2 * 2 * d)
    assert run["results"]["prompt"]["trainable_parameters"] == prefix + d * vocab + vocab


def test_a_stage_reruns_alone_from_its_inputs(run, eight, tmp_path) -> None:
    import shutil

    from hf_rrg.modeling.modeling_dcrrg import DCRRGForConditionalGeneration

    copy = tmp_path / "run"
    shutil.copytree(run["dir"], copy)
    before = DCRRGForConditionalGeneration.from_pretrained(copy / "describe" / "model")
    again = run_training(tiny_config(step3_epochs=1), copy, datasets=eight, stages=["describe"])
    assert [(h["step"], h["epoch"]) for h in again["describe"]["history"]] == [("step3", 0)]
    assert again["pretrain"] == json.loads(json.dumps(run["results"]["pretrain"]))  # recorded, not re-run
    after = DCRRGForConditionalGeneration.from_pretrained(copy / "describe" / "model")
    assert not torch.equal(before.lm_head.weight, after.lm_head.weight)  # trained again from the pretrain model
    # resume inside a stage: the checkpoint holds epoch 0, so only epoch 1 runs and epoch 0's record is kept
    resumed = run_training(tiny_config(step3_epochs=2), copy, datasets=eight, stages=["describe"], resume=True)
    history = resumed["describe"]["history"]
    assert [(h["step"], h["epoch"]) for h in history] == [("step3", 0), ("step3", 1)]
    assert history[0] == again["describe"]["history"][0]
    # full-parameter fine-tuning (Table 4, model 7) instead of the prefix: every parameter trains, no adapter
    full = run_training(tiny_config(step4_epochs=1, finetuning="full"), copy, datasets=eight, stages=["prompt"])
    model = DCRRGForConditionalGeneration.from_pretrained(copy / "model")
    assert full["prompt"]["finetuning"] == "full" and model.config.prefix_length == 0
    assert full["prompt"]["trainable_parameters"] == sum(p.numel() for p in model.parameters())


def test_export_loads_without_hf_rrg_and_generates_the_same(run, eight, tmp_path) -> None:
    from test_hub_fixtures import run_without_hf_rrg
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from hf_rrg.hub import export_model

    out = export_model(run["dir"], tmp_path / "export", repo_id="hf-rrg-test/dcrrg-tiny")
    for name in ("modeling_dcrrg.py", "configuration_dcrrg.py", "dcclip.py", "dcrrg_losses.py"):
        assert (out / name).is_file(), name
    card = (out / "README.md").read_text()  # the method's card, with the run's recipe choices and test scores
    assert "P-Tuning v2" in card and "- finetuning: prompt" in card and "- balancing: True" in card
    images = []
    for i, study in enumerate(eight["test"]["images"][:3]):
        path = tmp_path / f"study{i}.png"
        study[0].save(path)
        images.append(str(path))
    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    inputs = processor(images=[[image] for image in images])
    with torch.no_grad():
        beam = model.generate(**inputs).tolist()
    run_model = run["dir"] / "model"  # the recipe's own RUN_DIR/model is the same complete Hub repo
    for name in ("modeling_dcrrg.py", "configuration_dcrrg.py", "README.md", "processor_config.json"):
        assert (run_model / name).is_file(), name
    assert "AutoModelForImageTextToText" in json.loads((run_model / "config.json").read_text())["auto_map"]
    code = f"""
import json, torch
from transformers import AutoModelForImageTextToText, AutoProcessor
images, beams = {images!r}, {{}}
for out in ({str(out)!r}, {str(run_model)!r}):
    model = AutoModelForImageTextToText.from_pretrained(out, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
    inputs = processor(images=[[image] for image in images])
    with torch.no_grad():
        beams[out] = model.generate(**inputs).tolist()
print(json.dumps({{"module": type(model).__module__, "beams": list(beams.values())}}))
"""
    remote = run_without_hf_rrg(code, tmp_path)
    assert remote["module"].startswith("transformers_modules.") and remote["beams"] == [beam, beam]


def test_inspect_cli_prints_probabilities_and_descriptions(run, eight, tmp_path, capsys) -> None:
    from hf_rrg.cli import build_parser
    from hf_rrg.modeling.modeling_dcrrg import DCRRGForConditionalGeneration

    path = tmp_path / "study.png"
    eight["test"][0]["images"][0].save(path)
    args = build_parser().parse_args(["dcrrg", "inspect", str(path), "--model", str(run["dir"] / "model"),
                                      "--describe-model", str(run["dir"] / "describe" / "model"), "--json"])  # fmt: skip
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert [row["observation"] for row in result["observations"]][:2] == ["No Finding", "Enlarged Cardiomediastinum"]
    model = DCRRGForConditionalGeneration.from_pretrained(run["dir"] / "model").eval()
    from hf_rrg.modeling.processing_rrg import RRGProcessor

    inputs = RRGProcessor.from_pretrained(run["dir"] / "model")(images=[[str(path)]])
    expected = model.observation_probabilities(**inputs)[0].tolist()
    assert [row["probability"] for row in result["observations"]] == pytest.approx(expected, abs=1e-4)
    assert result["report"] == json.loads((run["dir"] / "predictions.jsonl").read_text().splitlines()[0])["prediction"]
    assert any(row["description"] for row in result["observations"])


def test_retrieval_scores_on_the_run_model(run, eight) -> None:
    from hf_rrg.dcrrg.commands import retrieval_scores
    from hf_rrg.modeling.modeling_dcrrg import DCRRGForConditionalGeneration
    from hf_rrg.modeling.processing_rrg import RRGProcessor

    model = DCRRGForConditionalGeneration.from_pretrained(run["dir"] / "model").eval()
    processor = RRGProcessor.from_pretrained(run["dir"] / "model")
    result = retrieval_scores(model, processor, eight["test"], per_class=200, batch_size=4, progress=False)
    assert set(result["auroc"]) == set(model.config.observation_names) | {"Average AUROC"}
    defined = [v for k, v in result["auroc"].items() if k != "Average AUROC" and v == v]
    assert all(0.0 <= v <= 1.0 for v in defined)
    if result["five_by_n"]["size"]:
        assert set(result["precision"]) == {"P@1", "P@2", "P@5", "P@10"}


def test_observation_labels_descriptions_and_balancing(eight) -> None:
    from hf_rrg.dcrrg.data import DCRRGSamples, description_instances, observation_instances
    from hf_rrg.dcrrg.observations import IGNORE, record_from_values
    from hf_rrg.labeling import OBSERVATIONS, CheXpertLabeler

    result = CheXpertLabeler().label("The heart is enlarged. No pleural effusion. Possible edema. A tube is seen.")
    record = record_from_values(result.values, result.sentences, result.mentions, OBSERVATIONS)
    names = list(OBSERVATIONS)
    assert record.labels[names.index("Cardiomegaly")] == 1 and record.labels[names.index("Edema")] == IGNORE
    assert record.labels[names.index("Pleural Effusion")] == 0 and record.labels[names.index("Fracture")] == 0
    assert record.label_vector[names.index("Cardiomegaly")] == 1.0 and record.label_vector[names.index("Edema")] == 0
    assert record.descriptions[names.index("Cardiomegaly")] == "the heart is enlarged."
    assert names.index("Fracture") not in record.descriptions  # unmentioned: no description
    samples = DCRRGSamples.from_dataset(eight["train"], OBSERVATIONS, progress=False)
    plain = observation_instances(samples, "image", balancing=False)
    kept = sum(label != IGNORE for s in samples.samples for label in s.record.labels)
    assert len(plain) == kept
    balanced = observation_instances(samples, "image", balancing=True, seed=1, epoch=0)
    for k in range(14):
        labels = [i.target for i in balanced if i.observation == k]
        if 0 in labels and 1 in labels:
            assert labels.count(0) == labels.count(1)  # minority re-sampled up to the majority
    assert balanced != observation_instances(samples, "image", balancing=True, seed=1, epoch=1)
    text_only = DCRRGSamples.from_dataset(eight["train"], OBSERVATIONS, use_images=False, progress=False)
    assert observation_instances(text_only, "image") == [] and len(observation_instances(text_only, "text")) == kept
    described = description_instances(samples)
    assert {i.modality for i in described} == {"image", "text"} and len(described) % 2 == 0


def test_dcrrg_trains_on_a_report_folder_dataset(eight, tmp_path) -> None:
    """report_folder rows hold undecoded `{"bytes": None, "path": ...}` image cells (read by hf-rrg's loader): every
    DCRRG step and the final test generation read them through the image processor."""
    import csv

    from hf_rrg.data import load_builder

    rows = []
    for i, row in enumerate(eight["train"]):
        name = f"img/s{i}.png"
        (tmp_path / "img").mkdir(exist_ok=True)
        row["images"][0].save(tmp_path / name)
        rows.append({"id": f"s{i}", "image": name, "report": row["report"],
                     "split": "test" if i == 7 else "validation" if i == 6 else "train"})  # fmt: skip
    with open(tmp_path / "studies.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    folder = load_builder("report_folder", tmp_path, cache_dir=tmp_path / "cache", image_columns="image")
    assert folder["train"][0]["images"][0] == {"bytes": None, "path": str((tmp_path / "img/s0.png").resolve())}
    config = tiny_config(step1_epochs=1, step2_epochs=1, step3_epochs=1, step4_epochs=1)
    results = run_training(config, tmp_path / "run", datasets=dict(folder))
    assert [h["step"] for h in results["pretrain"]["history"]] == ["step1", "step2"]
    predictions = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in predictions] == ["s7"] and predictions[0]["reference"] == rows[7]["report"].strip()
