"""Start-up: `import hf_rrg` and the light commands (`--help`, `label`, `evaluate`) load no torch, the Auto classes
still know hf-rrg's model types whatever the import order, and `python -m hf_rrg` is the CLI.

Every check runs in a fresh interpreter: what an import loads can only be seen from a clean `sys.modules`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import hf_rrg

SRC = Path(hf_rrg.__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "torchvision")


def run_python(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`python ARGS` in a fresh interpreter that imports this checkout's hf_rrg; fails the test when it fails."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, (
        f"python {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-4000:]}"
    )
    return done


def last_json_line(done: subprocess.CompletedProcess) -> dict:
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_hf_rrg_loads_no_torch(tmp_path: Path) -> None:
    code = (
        "import json, sys, hf_rrg\n"
        f"print(json.dumps({{'loaded': [m for m in {HEAVY!r} if m in sys.modules], 'dir': dir(hf_rrg)}}))"
    )
    result = last_json_line(run_python(["-c", code], tmp_path))
    assert result["loaded"] == []
    assert {"R2GenConfig", "R2GenCMNForConditionalGeneration", "RRGProcessor"} <= set(result["dir"])


def test_light_cli_commands_load_no_torch(tmp_path: Path) -> None:
    (tmp_path / "reports.csv").write_text('"No pleural effusion. Mild cardiomegaly."\n"No pneumothorax."\n')
    same = [
        "the heart is normal in size. no pleural effusion.",
        "mild cardiomegaly. small left pleural effusion.",
    ]
    (tmp_path / "predictions.jsonl").write_text(
        "".join(
            json.dumps({"id": i, "prediction": text, "reference": text}) + "\n" for i, text in enumerate(same)
        )
    )
    code = f"""
import contextlib, io, json, sys
from hf_rrg.cli import main
codes = {{}}
with contextlib.redirect_stdout(io.StringIO()) as help_text:
    try:
        main(["--help"])
    except SystemExit as done:
        codes["help"] = done.code
codes["label"] = main(["label", "reports.csv", "--out", "labels.csv", "--no-progress"])
codes["evaluate"] = main(["evaluate", "predictions.jsonl", "--metrics", "bleu,rouge_l,cider_d,ce", "--out", "scores.json"])
print(json.dumps({{"codes": codes, "help": help_text.getvalue(), "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
    result = last_json_line(run_python(["-c", code], tmp_path))
    assert result["loaded"] == [], f"the light commands imported {result['loaded']}"
    assert result["codes"] == {"help": 0, "label": 0, "evaluate": 0}
    assert "generate" in result["help"] and "evaluate" in result["help"]
    labels = (tmp_path / "labels.csv").read_text().splitlines()
    assert labels[1].startswith("No pleural effusion. Mild cardiomegaly.,,,1.0,")  # Cardiomegaly positive
    scores = json.loads((tmp_path / "scores.json").read_text())["scores"]
    assert scores["bleu_4"] == pytest.approx(1.0, abs=1e-6) and scores["rouge_l"] == pytest.approx(1.0)
    assert scores["ce_micro_f1"] == 1.0  # identical reports: identical labels


def test_python_dash_m_hf_rrg_is_the_cli(tmp_path: Path) -> None:
    done = run_python(["-m", "hf_rrg", "--help"], tmp_path)
    assert done.stdout.startswith("usage: hf-rrg") and "generate" in done.stdout


# How a user may reach the Auto classes: each import order must leave hf-rrg's types registered. Before any Auto
# class: libraries that import transformers themselves; hf-rrg modules that import transformers while their package
# is half-imported.
IMPORT_ORDERS = {
    "hf_rrg_then_auto": "import hf_rrg\nhf_rrg.R2GenCMNConfig",
    "transformers_first": "from transformers import AutoConfig\nimport hf_rrg",
    "libraries_importing_transformers_first": "import hf_rrg\nimport accelerate, datasets, evaluate, peft, timm",
    "submodules_first": (
        "import hf_rrg.hub.pipeline_registration\nimport hf_rrg.modeling.modeling_r2gencmn\n"
        "import hf_rrg.cli\nhf_rrg.cli.build_parser()"
    ),
}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A tiny R2GenCMN saved with its processor, an image, and the report the in-process model writes for it."""
    from test_hub_fixtures import build_model_and_processor

    folder = tmp_path_factory.mktemp("startup_model")
    reports = [
        "the heart is normal in size .",
        "no pleural effusion or pneumothorax .",
        "the lungs are clear .",
    ] * 2
    model, processor = build_model_and_processor("r2gencmn", reports, seed=3)
    model.save_pretrained(folder / "model")
    processor.save_pretrained(folder / "model")
    image = folder / "chest.png"
    Image.linear_gradient("L").resize((80, 72)).save(image)
    ids = model.generate(**processor(images=[str(image)]), num_beams=1, do_sample=False, max_new_tokens=12)
    report = processor.batch_decode(ids, skip_special_tokens=True)[0]
    assert report.strip(), "the tiny model writes words (the comparison below needs some)"
    return folder / "model", image, report


@pytest.mark.slow
@pytest.mark.parametrize("order", sorted(IMPORT_ORDERS))
def test_auto_classes_know_hf_rrg_types_after_lazy_import(order: str, saved_model, tmp_path: Path) -> None:
    model_dir, image, expected_report = saved_model
    code = f"""{IMPORT_ORDERS[order]}
import json
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
from transformers.pipelines import PIPELINE_REGISTRY
model = AutoModelForImageTextToText.from_pretrained({str(model_dir)!r}).eval()
processor = AutoProcessor.from_pretrained({str(model_dir)!r})
ids = model.generate(**processor(images=[{str(image)!r}]), num_beams=1, do_sample=False, max_new_tokens=12)
print(json.dumps({{
    "model": f"{{type(model).__module__}}.{{type(model).__name__}}",
    "processor": type(processor).__name__,
    "config": type(AutoConfig.for_model("r2gen")).__name__,
    "pipeline": "radiology-report-generation" in PIPELINE_REGISTRY.get_supported_tasks(),
    "report": processor.batch_decode(ids, skip_special_tokens=True)[0],
}}))
"""
    result = last_json_line(run_python(["-c", code], tmp_path))
    assert result["model"] == "hf_rrg.modeling.modeling_r2gencmn.R2GenCMNForConditionalGeneration"
    assert result["processor"] == "RRGProcessor" and result["config"] == "R2GenConfig"
    assert result["pipeline"] is True
    assert result["report"] == expected_report
