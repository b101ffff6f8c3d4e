"""Recipe stages that are not `fit` train through the same engine: ASGK's visual pre-training and DCRRG's step 1
on 2 CPU processes (gloo, launched with the shipped `cpu_2proc.yaml`; DCRRG in bf16) keep the replicas in sync and
write the run folder once; a DCRRG stage killed with SIGKILL mid-epoch and an ASGK stage stopped by an error
mid-epoch resume to the per-step losses and optimizer moments of an uninterrupted run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from launch_helpers import cpu_env, free_port

from hf_rrg.training import config_from_dict, run_training
from hf_rrg.training.checkpointing import latest_checkpoint
from hf_rrg.training.state_io import load_tensors_json

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_PROCESSOR = {"eval_size": 64, "resize_shorter": 72, "crop_size": 64, "max_views": 1}
DATA = {"builder": "demo", "max_train_samples": 8, "max_validation_samples": 2, "max_test_samples": 2}
ASGK = {
    "method": "asgk",
    "model": {"visual_backbone": "test_resnet", "region_size": 48, "d_model": 32, "d_ff": 64, "num_heads": 4,
              "graph_num_heads": 4, "num_layers": 1, "max_seq_length": 12, "textbook_max_length": 16,
              "max_position_embeddings": 32},
    "recipe_options": {"progress": False, "use_external_signals": False, "visual_epochs": 2, "visual_batch_size": 2},
    "data": {**DATA, "augment": True},
    "tokenizer": {"cleaner": "r2gen_iu_xray", "min_count": 1},
    "image_processor": IMAGE_PROCESSOR,
    "training": {"seed": 0, "checkpoint_every_steps": 1, "eval_batch_size": 2},
    "evaluation": {"val_metrics": ["bleu"], "test_metrics": ["bleu"]},
}  # fmt: skip
DCRRG = {
    "method": "dcrrg",
    "model": {"visual_backbone": "test_resnet", "visual_pretrained": False, "projection_dim": 16, "d_model": 32,
              "d_ff": 64, "num_heads": 4, "dropout": 0.1, "max_seq_length": 12, "description_max_length": 12,
              "text_encoder_config": {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 1,
                                      "intermediate_size": 32, "max_position_embeddings": 64}},
    "recipe_options": {"run_step2": False, "step1_epochs": 2, "pretrain_batch_size": 24, "text_max_length": 32,
                       "lr": 1e-3, "progress": False, "seed": 0},
    "data": {**DATA, "augment": False},
    "tokenizer": {"cleaner": "r2gen_iu_xray", "min_count": 1},
    "image_processor": IMAGE_PROCESSOR,
    "training": {"seed": 0, "checkpoint_every_steps": 2, "eval_batch_size": 2},
    "evaluation": {"test_metrics": ["bleu"]},
}  # fmt: skip

KILLER = r'''
import os, signal, sys
from hf_rrg.dcrrg import objectives
from hf_rrg.training import load_config, run_training

config, run_dir, kill_at, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "resume"
original, calls = objectives.StepObjective.forward, [0]

def forward(self, items):
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no exception handler: as a crash or an OOM kill
    return original(self, items)

objectives.StepObjective.forward = forward
run_training(load_config(config), run_dir, stages=["pretrain"], resume=resume)
'''



def _launch_two(config: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(REPO_ROOT / "training_scripts" / "accelerate" / "cpu_2proc.yaml"), "--main_process_port", str(free_port()),
        str(REPO_ROOT / "training_scripts" / "train.py"), "--config", str(config), "--output-dir", str(run_dir), *extra,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=cpu_env(), timeout=900, cwd=run_dir.parent)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _steps(run_dir: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "logs" / f"{task}_steps.jsonl").read_text().splitlines()]


def _assert_same_steps_and_moments(expected: Path, resumed: Path, task: str, checkpoints: str) -> None:
    a, b = _steps(expected, task), _steps(resumed, task)
    assert [r["step"] for r in a] == [r["step"] for r in b] and a
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], abs=1e-6), x["step"]
    state_a = load_tensors_json(latest_checkpoint(expected / checkpoints), "optimizer")["state"]
    state_b = load_tensors_json(latest_checkpoint(resumed / checkpoints), "optimizer")["state"]
    assert set(state_a) == set(state_b) and state_a
    for index, moments in state_a.items():
        for name, value in moments.items():
            if torch.is_tensor(value):
                torch.testing.assert_close(state_b[index][name], value, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_asgk_visual_stage_on_two_processes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = _write(tmp_path, "asgk", ASGK)
    run_training(config_from_dict(ASGK), run_dir, stages=["tags"])
    done = _launch_two(config, run_dir, "--stage", "visual")
    summary = json.loads((run_dir / "stages" / "visual.json").read_text())
    assert summary["num_processes"] == 2 and summary["replicas_in_sync"] is True
    # 8 studies / (2 processes x batch 2) = 2 optimizer steps per epoch, 2 epochs, logged once
    assert [r["step"] for r in _steps(run_dir, "visual")] == [1, 2, 3, 4]
    checkpoint = latest_checkpoint(run_dir / "visual" / "checkpoints")
    assert checkpoint.name == "epoch_0001" and {"rng_state_0.safetensors", "rng_state_1.safetensors"} <= {
        p.name for p in checkpoint.iterdir()}  # fmt: skip
    assert (run_dir / "visual.safetensors").is_file()
    assert done.stdout.count("ASGK visual pre-training") == 1  # the artifact is written by one process


@pytest.mark.slow
def test_dcrrg_step1_on_two_processes_in_bf16(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = _write(tmp_path, "dcrrg", DCRRG)
    done = _launch_two(config, run_dir, "--stage", "pretrain", "--set", "training.mixed_precision=bf16",
                       "--set", "recipe_options.step1_epochs=1")  # fmt: skip
    summary = json.loads((run_dir / "stages" / "pretrain.json").read_text())
    assert summary["num_processes"] == 2 and summary["replicas_in_sync"] is True
    assert summary["mixed_precision"] == ["bf16"] and [h["step"] for h in summary["history"]] == ["step1"]
    steps = _steps(run_dir, "step1")
    assert steps and all(0 < r["loss"] < 10 for r in steps) and [r["step"] for r in steps] == list(
        range(1, len(steps) + 1))  # fmt: skip
    state = json.loads((latest_checkpoint(run_dir / "pretrain" / "step1" / "checkpoints") / "trainer_state.json")
                       .read_text())  # fmt: skip
    assert state["mixed_precision"] == "bf16" and state["num_processes"] == 2
    assert (run_dir / "pretrain" / "model" / "model.safetensors").is_file()
    assert done.stdout.count("step1: trained epochs 1-1 of 1") == 1


@pytest.mark.slow
def test_dcrrg_stage_killed_mid_epoch_resumes_exactly(tmp_path: Path) -> None:
    config = _write(tmp_path, "dcrrg", DCRRG)
    script = tmp_path / "killer.py"
    script.write_text(KILLER)

    def run(run_dir: Path, kill_at: int, mode: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(script), str(config), str(run_dir), str(kill_at), mode]
        return subprocess.run(command, capture_output=True, text=True, env=cpu_env(), timeout=900)

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = run(straight, 0, "fresh")
    assert done.returncode == 0, done.stderr[-3000:]
    per_epoch = sum(1 for record in _steps(straight, "step1") if record["epoch"] == 0)
    assert per_epoch >= 4
    done = run(killed, per_epoch + 3, "fresh")  # the 3rd batch of epoch 2: after the mid-epoch checkpoint of step +2
    assert done.returncode == -9, done.stderr[-3000:]  # SIGKILL
    assert latest_checkpoint(killed / "pretrain" / "step1" / "checkpoints").name.startswith("step_")
    done = run(killed, 0, "resume")
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_steps_and_moments(straight, killed, "step1", "pretrain/step1/checkpoints")


@pytest.mark.slow
def test_asgk_stage_stopped_by_an_error_mid_epoch_resumes_exactly(tmp_path: Path, monkeypatch) -> None:
    from hf_rrg.asgk.pretraining import VisualObjective

    config = config_from_dict({**ASGK, "recipe_options": {**ASGK["recipe_options"], "visual_batch_size": 3}})
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run_training(config, straight, stages=["tags"])
    shutil.copytree(straight, stopped)
    run_training(config, straight, stages=["visual"])
    original, calls = VisualObjective.forward, [0]

    def failing(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 5:  # epoch 2 (3 batches per epoch), 2nd batch: after the checkpoint of step 4
            raise RuntimeError("injected failure")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VisualObjective, "forward", failing)
    with pytest.raises(RuntimeError, match="injected failure"):
        run_training(config, stopped, stages=["visual"])
    monkeypatch.setattr(VisualObjective, "forward", original)
    assert latest_checkpoint(stopped / "visual" / "checkpoints").name == "step_00000004"
    run_training(config, stopped, stages=["visual"], resume=True)
    _assert_same_steps_and_moments(straight, stopped, "visual", "visual/checkpoints")
