"""The training engine on a tiny regression task: exact resume from a mid-epoch checkpoint (losses, learning rates,
epoch means and optimizer moments equal to an uninterrupted run), nothing unpickled on resume (planted pickles
never run), damaged checkpoints and unreadable random states named, a non-finite loss stopped with its step and
components, and checkpoints made of safetensors + JSON only."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hf_rrg.training.checkpointing import CheckpointError, latest_checkpoint
from hf_rrg.training.engine import Engine, LoopSettings, NonFiniteLossError, TrainingTask
from hf_rrg.training.resume import ResumeError, ResumePolicy
from hf_rrg.training.run_setup import EpochPermutationSampler
from hf_rrg.training.runtime import seed_everything
from hf_rrg.training.state_io import load_tensors_json

SAMPLES, BATCH = 20, 3  # 7 micro-batches per epoch; accumulation 2 -> optimizer steps at micro-batches 2, 4, 6, 7


class Points(Dataset):
    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(1)
        self.x = torch.randn(SAMPLES, 4, generator=generator)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, index: int) -> dict:
        return {"index": index, "x": self.x[index], "y": self.y[index]}


class Tiny(nn.Module):
    """Dropout on, two named loss components; `fail_at` / `nan_at` make the n-th forward call fail."""

    calls = 0
    fail_at: int | None = None
    nan_at: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.drop, self.head = nn.Linear(4, 16), nn.Dropout(0.3), nn.Linear(16, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        Tiny.calls += 1
        if Tiny.calls == Tiny.fail_at:
            raise RuntimeError("injected failure")
        prediction = self.head(self.drop(torch.tanh(self.hidden(x)))).squeeze(-1)
        mse = ((prediction - y) ** 2).mean()
        if Tiny.calls == Tiny.nan_at:
            mse = mse * float("nan")
        l1 = (prediction - y).abs().mean()
        return {"loss": mse + 0.1 * l1, "mse_loss": mse, "l1_loss": l1}


def run_tiny(run_dir: Path, resume: bool = False, fail_at: int | None = None, nan_at: int | None = None,
             inexact: bool = False) -> object:  # fmt: skip
    from accelerate import Accelerator

    Tiny.calls, Tiny.fail_at, Tiny.nan_at = 0, fail_at, nan_at
    seed_everything(0)
    task = TrainingTask(
        name="tiny", model=Tiny(),
        train_loader=DataLoader(Points(), batch_size=BATCH, sampler=EpochPermutationSampler(SAMPLES, 0)),
        optimizer=lambda model: torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.01),
        scheduler=lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5**epoch),
        settings=LoopSettings(epochs=3, seed=0, gradient_accumulation_steps=2, clip_grad_value=0.5,
                              checkpoint_every_steps=2, keep_checkpoints=2, progress=False),
    )  # fmt: skip
    engine = Engine(Accelerator(cpu=True), run_dir, run_dir / "checkpoints", ResumePolicy(resume, False, inexact))
    return engine.run(task)


def step_records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "logs" / "tiny_steps.jsonl").read_text().splitlines()]


def final_moments(run_dir: Path) -> dict:
    return load_tensors_json(latest_checkpoint(run_dir / "checkpoints"), "optimizer")["state"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("straight")
    run_tiny(run_dir)
    return run_dir


def _interrupted(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="injected failure"):
        run_tiny(run_dir, fail_at=13)  # micro-batch 6 of epoch 2; the last checkpoint is after step 6 (micro 4)
    assert latest_checkpoint(run_dir / "checkpoints").name == "step_00000006"
    return run_dir


def _assert_same_run(expected: Path, resumed: Path) -> None:
    a, b = step_records(expected), step_records(resumed)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 13))  # 4 steps x 3 epochs, once each
    for x, y in zip(a, b):
        for key in ("loss", "mse_loss", "l1_loss", "lr/0"):
            assert y[key] == pytest.approx(x[key], abs=1e-6), (x["step"], key)
    means = [json.loads(line) for line in (resumed / "logs" / "tiny_epochs.jsonl").read_text().splitlines()]
    expected_means = [json.loads(line) for line in (expected / "logs" / "tiny_epochs.jsonl").read_text().splitlines()]
    for x, y in zip(expected_means, means):
        assert y["train/loss"] == pytest.approx(x["train/loss"], abs=1e-6)  # the resumed epoch's mean too
    moments_a, moments_b = final_moments(expected), final_moments(resumed)
    assert set(moments_a) == set(moments_b) and moments_a
    for index in moments_a:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(moments_b[index][name], moments_a[index][name], atol=1e-6, rtol=0)


def test_mid_epoch_resume_repeats_losses_and_optimizer_moments(straight: Path, tmp_path: Path) -> None:
    run_dir = _interrupted(tmp_path)
    run_tiny(run_dir, resume=True)
    _assert_same_run(straight, run_dir)


def test_checkpoints_hold_only_safetensors_and_json(straight: Path) -> None:
    checkpoint = latest_checkpoint(straight / "checkpoints")
    assert checkpoint.name == "epoch_0002"
    names = sorted(p.name for p in checkpoint.iterdir())
    assert names == ["model.safetensors", "optimizer.json", "optimizer.safetensors", "rng_state_0.safetensors",
                     "scheduler.json", "trainer_state.json"]  # fmt: skip
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["epoch"] == 2 and state["global_step"] == 12 and state["micro_step"] == 0
    assert set(state["files"]) == set(names) - {"trainer_state.json"}
    assert json.loads((checkpoint / "scheduler.json").read_text())["last_epoch"] == 3
    kept = sorted(p.name for p in (straight / "checkpoints").iterdir() if not p.name.startswith("."))
    assert kept == ["LATEST", "epoch_0002", "step_00000010"]  # keep_checkpoints=2, ordered by progress


class Payload:
    """Unpickling this writes a marker file: what a planted checkpoint file would do to a loader using pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def test_planted_pickles_are_never_loaded(straight: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    run_dir = _interrupted(tmp_path)
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    marker = tmp_path / "marker.txt"
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "pytorch_model.bin"):
        (checkpoint / name).write_bytes(pickle.dumps(Payload(marker)))
    pickle.loads(pickle.dumps(Payload(tmp_path / "proof.txt")))
    assert (tmp_path / "proof.txt").is_file()  # the payload does run when something unpickles it

    def refuse(*args, **kwargs):
        raise AssertionError("resume must not unpickle anything")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    run_tiny(run_dir, resume=True)
    assert not marker.exists()
    assert "custom_checkpoint_0.pkl" in capsys.readouterr().out  # named as ignored
    _assert_same_run(straight, run_dir)


def test_damaged_or_truncated_checkpoint_is_named(straight: Path, tmp_path: Path) -> None:
    for name, damage in (("model.safetensors", "flip"), ("optimizer.safetensors", "truncate")):
        run_dir = tmp_path / name
        shutil.copytree(straight, run_dir)
        path = latest_checkpoint(run_dir / "checkpoints") / name
        data = bytearray(path.read_bytes())
        if damage == "flip":
            data[len(data) // 2] ^= 0xFF
        else:
            data = data[: len(data) // 2]
        path.write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match=rf"{name} is damaged .*Delete that checkpoint folder"):
            run_tiny(run_dir, resume=True)
    run_dir = tmp_path / "other_format"
    shutil.copytree(straight, run_dir)
    state_file = latest_checkpoint(run_dir / "checkpoints") / "trainer_state.json"
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), "format": "accelerate"}))
    with pytest.raises(CheckpointError, match="was not written by this version"):
        run_tiny(run_dir, resume=True)


def test_unreadable_random_states_stop_the_resume_unless_inexact(straight: Path, tmp_path: Path, capsys) -> None:
    from safetensors.torch import save_file

    from hf_rrg.training.state_io import file_digest

    run_dir = _interrupted(tmp_path)
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    rng = checkpoint / "rng_state_0.safetensors"
    save_file({"torch": torch.get_rng_state()}, str(rng))  # readable file, but no Python / NumPy states
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    state["files"][rng.name] = {"bytes": rng.stat().st_size, "sha256": file_digest(rng)}
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(ResumeError, match=r"random states of process 0.*--resume-inexact"):
        run_tiny(run_dir, resume=True)
    run = run_tiny(run_dir, resume=True, inexact=True)
    assert "not an exact resume" in capsys.readouterr().out
    assert run.state["global_step"] == 12


def test_non_finite_loss_stops_with_step_and_components(tmp_path: Path) -> None:
    assert issubclass(NonFiniteLossError, ValueError)  # the CLI prints it as one line
    with pytest.raises(NonFiniteLossError) as caught:
        run_tiny(tmp_path, nan_at=9)  # micro-batch 2 of epoch 2: optimizer step 5
    message = str(caught.value)
    assert "tiny: the loss is not finite at epoch 2, optimizer step 5" in message
    assert "loss=nan" in message and "mse_loss=nan" in message and "l1_loss=" in message
    assert latest_checkpoint(tmp_path / "checkpoints").name == "epoch_0000"  # nothing after the bad step
