"""Builders shared by the hub, pipeline and CLI tests: tiny R2Gen / R2GenCMN run folders made from real reports.

The run folder has the layout `hf-rrg train` writes: `model/` (model + processor `save_pretrained`),
`metrics.json` (with a `test` section, `best_epoch` and `val_history`) and `config.yaml`. This module holds no tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

MISC_IMAGES = (
    "00000001_000.png",
    "16747_3_1.jpg",
    "tb0005.png",
    "pydicom-data_RG1_UNCR_chest_CR.dcm",
    "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
)

TEST_METRICS = {"bleu_1": 0.4123, "bleu_4": 0.1571, "rouge_l": 0.3518, "cider_d": 0.4012, "meteor": float("nan")}


def real_reports(shared_data: Path, count: int = 150) -> list[str]:
    """The first `count` IU X-Ray training reports of R2Gen's annotation file."""
    annotation = json.loads((shared_data / "iu_xray" / "annotation.json").read_text(encoding="utf-8"))
    return [item["report"] for item in annotation["train"][:count]]


def misc_images(shared_data: Path) -> list[Path]:
    return [shared_data / "misc_cxr_images" / name for name in MISC_IMAGES]


def build_model_and_processor(method: str, reports: list[str], seed: int = 0):
    """A tiny randomly initialised model of `method` ("r2gen" / "r2gencmn") and its processor (64 px images)."""
    from hf_rrg import (
        R2GenCMNConfig,
        R2GenCMNForConditionalGeneration,
        R2GenConfig,
        R2GenForConditionalGeneration,
        RRGImageProcessor,
        RRGProcessor,
        RRGTokenizer,
    )

    tokenizer = RRGTokenizer.from_reports(reports, cleaner="r2gen_iu_xray", min_count=2)
    common = dict(
        vocab_size=len(tokenizer),
        visual_backbone="test_resnet",
        visual_pretrained=False,
        d_model=32,
        d_ff=64,
        num_heads=4,
        num_layers=1,
        max_seq_length=30,
    )
    torch.manual_seed(seed)
    if method == "r2gencmn":
        model = R2GenCMNForConditionalGeneration(R2GenCMNConfig(cmm_size=64, cmm_dim=32, topk=8, **common))
    elif method == "r2gen":
        model = R2GenForConditionalGeneration(R2GenConfig(rm_d_model=32, rm_num_heads=4, **common))
    else:
        raise ValueError(method)
    image_processor = RRGImageProcessor(
        eval_size=64, resize_shorter=72, crop_size={"height": 64, "width": 64}, max_views=2
    )
    return model.eval(), RRGProcessor(image_processor, tokenizer)


def make_run_dir(run_dir: Path, method: str, reports: list[str], seed: int = 0) -> Path:
    """A training run folder as `hf-rrg train` writes it, with a tiny model of `method`."""
    model, processor = build_model_and_processor(method, reports, seed)
    (run_dir / "model").mkdir(parents=True)
    model.save_pretrained(run_dir / "model")
    processor.save_pretrained(run_dir / "model")
    metrics = {
        "method": method,
        "val_metric": "bleu_4",
        "best_epoch": 2,
        "best_val": 0.1432,
        "test": TEST_METRICS,
        "val_history": [
            {"epoch": 0, "val/bleu_4": 0.101, "val/rouge_l": 0.301},
            {"epoch": 1, "val/bleu_4": 0.1432, "val/rouge_l": 0.3211},
        ],
        "protocol": "r2gen",
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    config = {
        "method": method,
        "model": {"visual_backbone": "test_resnet", "d_model": 32},
        "data": {"builder": "iu_xray"},
        "training": {"epochs": 2, "batch_size": 4, "seed": 9223},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return run_dir


# A subprocess where `hf_rrg` cannot be imported: a meta path finder refuses it before the editable install's finder.
BLOCK_HF_RRG = """
import importlib.abc, sys
class _NoHfRrg(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hf_rrg" or name.startswith("hf_rrg."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, _NoHfRrg())
sys.path[:] = [p for p in sys.path if "/src" not in p.replace("\\\\", "/") and p not in ("", ".")]
try:
    import hf_rrg
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("hf_rrg is importable in the isolated subprocess")
"""


def run_without_hf_rrg(code: str, tmp_path: Path, timeout: int = 300) -> dict:
    """Run `code` in a fresh interpreter where `import hf_rrg` fails; it must print one JSON line last."""
    env = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HF_HUB_OFFLINE")
    }
    env.update(
        HF_HUB_OFFLINE="1",
        HF_MODULES_CACHE=str(tmp_path / "hf_modules"),
        TRANSFORMERS_VERBOSITY="error",
        TOKENIZERS_PARALLELISM="false",
    )
    completed = subprocess.run(
        [sys.executable, "-c", BLOCK_HF_RRG + code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if completed.returncode != 0:
        raise AssertionError(f"isolated subprocess failed:\n{completed.stdout}\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])
