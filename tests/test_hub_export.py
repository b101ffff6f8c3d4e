"""`hf_rrg.hub.export_model`: the exported folder is a complete, self-contained Hub model repo."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_hub_fixtures import TEST_METRICS, make_run_dir, misc_images, real_reports, run_without_hf_rrg

from hf_rrg.hub import check_model_dir, export_model, read_run
from hf_rrg.hub.model_card import read_front_matter, render_template, template_path

ALLOWED_IMPORTS = {"torch", "transformers", "timm", "numpy", "PIL", "tokenizers", "pydicom"}


@pytest.fixture(scope="module")
def reports(shared_data: Path) -> list[str]:
    return real_reports(shared_data)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, reports) -> dict[str, Path]:
    """Run folders and their exports, for R2GenCMN and R2Gen."""
    folders = {}
    for method in ("r2gencmn", "r2gen"):
        base = tmp_path_factory.mktemp(method)
        run = make_run_dir(base / "run", method, reports)
        folders[method] = export_model(run, base / "export", repo_id=f"hf-rrg-test/{method}-tiny")
        folders[f"{method}_run"] = run
    return folders


def test_export_writes_a_complete_hub_repo(exported):
    out = exported["r2gencmn"]
    names = {path.name for path in out.iterdir()}
    for required in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "processor_config.json",
        "README.md",
        "metrics.json",
        "training_config.yaml",
        "modeling_r2gencmn.py",
        "configuration_r2gen.py",
        "configuration_rrg.py",
        "report_transformer.py",
        "memory_modules.py",
        "visual_extractor.py",
        "tokenization_rrg.py",
        "report_cleaning.py",
        "image_processing_rrg.py",
        "image_loading.py",
        "processing_rrg.py",
        "pipeline_rrg.py",
    ):
        assert required in names, f"{required} missing from the export"
    assert not any(name.startswith(".") for name in names)
    assert not any(path.name.startswith(".") for path in out.parent.iterdir()), "staging folder left behind"

    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_r2gen.R2GenCMNConfig",
        "AutoModel": "modeling_r2gencmn.R2GenCMNForConditionalGeneration",
        "AutoModelForImageTextToText": "modeling_r2gencmn.R2GenCMNForConditionalGeneration",
    }
    pipe = config["custom_pipelines"]["radiology-report-generation"]
    assert pipe["impl"] == "pipeline_rrg.RadiologyReportGenerationPipeline"
    assert pipe["pt"] == ["AutoModelForImageTextToText"]
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["num_beams"] == 3 and generation["max_new_tokens"] == 30
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tokenizer_config["auto_map"]["AutoTokenizer"][0] == "tokenization_rrg.RRGTokenizer"
    processor_config = json.loads((out / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_rrg.RRGProcessor"
    assert processor_config["image_processor"]["auto_map"]["AutoImageProcessor"] == (
        "image_processing_rrg.RRGImageProcessor"
    )
    # the weights are the run's, tensor for tensor
    source = load_file(exported["r2gencmn_run"] / "model" / "model.safetensors")
    target = load_file(out / "model.safetensors")
    assert source.keys() == target.keys()
    assert all(torch.equal(source[key], target[key]) for key in source)


def test_exported_code_imports_only_allowed_packages(exported):
    import sys

    from transformers.dynamic_module_utils import get_imports

    for method in ("r2gencmn", "r2gen"):
        for code in exported[method].glob("*.py"):
            imports = set(get_imports(code)) - set(sys.stdlib_module_names)
            assert imports <= ALLOWED_IMPORTS, f"{code.name} imports {imports - ALLOWED_IMPORTS}"


def test_model_card_carries_measured_results_and_disclaimer(exported):
    card = (exported["r2gencmn"] / "README.md").read_text()
    meta = read_front_matter(card)
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "image-text-to-text"  # what `pipeline(..., trust_remote_code=True)` serves
    assert "r2gencmn" in meta["tags"] and "custom_code" in meta["tags"]
    (index,) = meta["model-index"]
    assert index["name"] == "r2gencmn-tiny"
    (result,) = index["results"]
    assert result["dataset"] == {"type": "iu_xray", "name": "IU X-Ray (Open-i, Indiana University)", "split": "test"}
    values = {metric["name"]: metric["value"] for metric in result["metrics"]}
    finite = {k: v for k, v in TEST_METRICS.items() if not math.isnan(v)}
    assert values == {"BLEU-1": finite["bleu_1"], "BLEU-4": finite["bleu_4"], "ROUGE-L": finite["rouge_l"],
                      "CIDEr-D": finite["cider_d"]}  # NaN (METEOR not run) is left out
    assert {m["type"] for m in result["metrics"]} == {"bleu", "rouge", "cider"}
    body = card.split("---\n", 2)[2]
    assert "Not for clinical use" in body
    assert "Cross-modal Memory Networks for Radiology Report Generation" in body  # the R2GenCMN template
    assert "| BLEU-4 | 0.1571 | 0.1432 |" in body  # test and validation (best epoch) columns
    assert "batch_size: 4" in body  # the training config
    assert 'pipeline(model="hf-rrg-test/r2gencmn-tiny", trust_remote_code=True)' in body
    assert "{{" not in body
    r2gen_card = (exported["r2gen"] / "README.md").read_text()
    assert "Generating Radiology Reports via Memory-driven Transformer" in r2gen_card


def test_template_fallback_and_unknown_placeholder(tmp_path):
    assert template_path("r2gen").name == "r2gen.md"
    assert template_path("no_such_method").name == "generic.md"
    with pytest.raises(ValueError, match=r"unknown placeholder\(s\) \['oops'\]"):
        render_template("# {{ model_name }} {{ oops }}", {"model_name": "x"}, source="t.md")
    assert render_template("a {{model_name}} b {{ model_name }}", {"model_name": "x"}) == "a x b x"


@pytest.mark.parametrize("method", ["r2gencmn", "r2gen"])
def test_export_loads_without_hf_rrg_and_generates_the_same(exported, shared_data, method, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = exported[method]
    images = [str(path) for path in misc_images(shared_data)[:4]]  # PNG, JPEG, PNG, DICOM
    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    assert type(model).__module__.startswith("hf_rrg.")
    inputs = processor(images=[[images[0], images[3]], [images[1]], [images[2]]])
    with torch.no_grad():
        beam = model.generate(**inputs).tolist()
        greedy = model.generate(**inputs, num_beams=1).tolist()
        logits = model(**inputs, decoder_input_ids=torch.tensor([[1, 5, 9, 14]] * 3)).logits
    reports = processor.batch_decode(beam, skip_special_tokens=True)
    assert all(reports)
    assert not torch.allclose(logits[0], logits[1], atol=1e-4)  # the images matter: a non-trivial comparison

    code = f"""
import json, torch
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor, pipeline
out = {str(out)!r}
images = {images!r}
model = AutoModelForImageTextToText.from_pretrained(out, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
inputs = processor(images=[[images[0], images[3]], [images[1]], [images[2]]])
with torch.no_grad():
    beam = model.generate(**inputs).tolist()
    greedy = model.generate(**inputs, num_beams=1).tolist()
    logits = model(**inputs, decoder_input_ids=torch.tensor([[1, 5, 9, 14]] * 3)).logits
pipe = pipeline(model=out, trust_remote_code=True, device="cpu")
print(json.dumps({{
    "model_module": type(model).__module__,
    "processor_module": type(processor).__module__,
    "config_class": type(AutoConfig.from_pretrained(out, trust_remote_code=True)).__name__,
    "auto_model_class": type(AutoModel.from_pretrained(out, trust_remote_code=True)).__name__,
    "beam": beam, "greedy": greedy, "logits": logits.tolist(),
    "reports": processor.batch_decode(beam, skip_special_tokens=True),
    "pipeline": pipe((images[0], images[3])),
    "pipeline_task": pipe.task, "pipeline_class": type(pipe).__name__,
}}))
"""
    remote = run_without_hf_rrg(code, tmp_path)
    assert remote["model_module"].startswith("transformers_modules.")
    assert remote["processor_module"].startswith("transformers_modules.")
    assert remote["config_class"] == type(model.config).__name__
    assert remote["auto_model_class"] == type(model).__name__
    assert remote["beam"] == beam
    assert remote["greedy"] == greedy
    torch.testing.assert_close(torch.tensor(remote["logits"]), logits, rtol=1e-5, atol=1e-5)
    assert remote["reports"] == reports
    assert remote["pipeline_task"] == "radiology-report-generation"
    assert remote["pipeline_class"] == "RadiologyReportGenerationPipeline"
    assert remote["pipeline"] == [{"generated_text": reports[0]}]


def test_export_refuses_a_non_empty_folder_unless_overwrite(exported, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        export_model(exported["r2gen_run"], out)
    with pytest.raises(FileExistsError, match="not a previous hf-rrg export"):  # a user's folder is never deleted
        export_model(exported["r2gen_run"], out, overwrite=True)
    assert (out / "keep.txt").exists()
    (out / "keep.txt").unlink()
    export_model(exported["r2gen_run"], out)
    (out / "keep.txt").write_text("x")
    export_model(exported["r2gen_run"], out, overwrite=True)  # a previous export is replaced as a whole
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    # a run folder's export is named after the run, not after the (possibly temporary) output folder
    card_name = read_front_matter((out / "README.md").read_text())["model-index"][0]["name"]
    assert card_name == exported["r2gen_run"].name != out.name


def test_export_accepts_a_plain_model_folder_and_reexports(exported, tmp_path):
    plain = read_run(exported["r2gen_run"] / "model")
    assert plain.run_dir is None and plain.metrics == {} and plain.training_config is None
    again = export_model(exported["r2gen"], tmp_path / "again")  # an exported repo is a model folder too
    run = read_run(again)
    assert run.test_metrics == {k: v for k, v in TEST_METRICS.items() if not math.isnan(v)}
    assert run.training_config["data"] == {"builder": "iu_xray"}
    assert read_front_matter((again / "README.md").read_text())["model-index"][0]["name"] == "again"


def test_read_run_metrics_sections(exported):
    run = read_run(exported["r2gencmn_run"])
    assert run.model_dir == exported["r2gencmn_run"] / "model"
    assert run.dataset == "iu_xray"
    assert run.validation_metrics == {"bleu_4": 0.1432, "rouge_l": 0.3211}  # val_history record of best_epoch 2
    assert set(run.test_metrics) == {"bleu_1", "bleu_4", "rouge_l", "cider_d"}


def test_bad_sources_name_the_problem(exported, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a training run folder"):
        read_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_model(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(ValueError, match="must not be"):
        export_model(exported["r2gen_run"], exported["r2gen_run"] / "model" / "sub")


def _copy_model(exported, tmp_path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(exported["r2gen"], folder)
    return folder


def test_truncated_safetensors_gives_a_clear_error(exported, tmp_path):
    folder = _copy_model(exported, tmp_path)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model\.safetensors is not a readable safetensors file.*corrupt"):
        check_model_dir(folder)
    weights.write_bytes(b"\x00garbage, not a safetensors header" * 10)
    with pytest.raises(ValueError, match=r"model\.safetensors is not a readable safetensors file"):
        export_model(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("model.safetensors", r"model\.safetensors is missing"),
        ("tokenizer.json", r"tokenizer\.json is missing"),
        ("processor_config.json", r"processor_config\.json is missing"),
        ("config.json", r"config\.json is missing"),
    ],
)
def test_missing_file_is_named(exported, tmp_path, missing, message):
    folder = _copy_model(exported, tmp_path)
    (folder / missing).unlink()
    with pytest.raises(FileNotFoundError, match=message):
        check_model_dir(folder)


def test_pickled_weights_are_refused(exported, tmp_path):
    folder = _copy_model(exported, tmp_path)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="safetensors only"):
        check_model_dir(folder)


def test_card_recipe_details() -> None:
    from hf_rrg.hub.model_card import recipe_details

    recipe = {"recipe": "xpronet", "labels_at_evaluation": "predicted", "prototype_initialisation": "kmeans"}
    assert recipe_details(recipe).splitlines() == [
        "- labels at evaluation: predicted",
        "- prototype initialisation: kmeans",
    ]
    assert recipe_details(None) == recipe_details({}) == "_No recipe details were recorded with this model._"
