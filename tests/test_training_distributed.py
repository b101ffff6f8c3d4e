"""`accelerate launch` with 2 CPU processes (gloo) runs training_scripts/train.py: the processes split the data,
stay in sync, and the run folder is written once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from launch_helpers import cpu_env, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]

CONFIG = {
    "method": "r2gencmn",
    "model": {
        "visual_backbone": "test_resnet", "visual_pretrained": False, "d_model": 32, "d_ff": 64, "num_layers": 1,
        "num_heads": 4, "cmm_size": 64, "cmm_dim": 32, "topk": 8, "max_seq_length": 12,
    },
    "data": {"builder": "demo", "max_train_samples": 8, "max_validation_samples": 3, "max_test_samples": 3},
    "tokenizer": {"cleaner": "r2gen_iu_xray", "min_count": 1},
    "image_processor": {"eval_size": 64, "resize_shorter": 72, "crop_size": 64, "max_views": 1},
    "training": {"epochs": 2, "batch_size": 2, "eval_batch_size": 2, "patience": None},
    "evaluation": {"val_metrics": ["bleu"], "test_metrics": ["bleu"]},
    "generation": {"num_beams": 2},
}



@pytest.mark.slow
def test_two_process_cpu_run_trains_syncs_and_saves_once(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
        str(REPO_ROOT / "training_scripts" / "train.py"), "--config", str(config), "--output-dir", str(run_dir),
    ]
    env = cpu_env()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_processes"] == 2
    assert metrics["replicas_in_sync"] is True  # every process ended with the same weights
    assert metrics["num_test"] == 3  # the uneven test shard's padding duplicate was dropped
    # 8 studies / (2 processes x batch 2) = 2 optimizer steps per epoch, logged once (by the main process)
    steps = [json.loads(line) for line in (run_dir / "logs" / "train_steps.jsonl").read_text().splitlines()]
    assert [record["step"] for record in steps] == [1, 2, 3, 4]
    assert len((run_dir / "predictions.jsonl").read_text().splitlines()) == 3
    assert (run_dir / "checkpoints" / "epoch_0001" / "rng_state_1.safetensors").is_file()  # both processes' RNGs
    assert (run_dir / "model" / "model.safetensors").is_file()
    assert done.stdout.count("Run folder:") == 1  # the summary (and the writes) happen on one process only
