"""Atomic checkpoints in safetensors + JSON (nothing is unpickled on resume).

Layout under a checkpoint folder (`RUN_DIR/checkpoints/` for `fit`, `RUN_DIR/<stage>/checkpoints/` for a recipe
stage's own training): `epoch_0003/` (the state after epoch 4) or `step_00001234/` (a mid-epoch state after that
optimizer step, with `training.checkpoint_every_steps`), `LATEST` (the name of the newest complete checkpoint,
replaced atomically) and, only while a save is in progress or after a crash during one, `.tmp_<name>/`.

A checkpoint folder holds exactly these files (`CHECKPOINT_FILES`; anything else is ignored and reported):

    model.safetensors          the trained module's state_dict (tensors sharing storage stored once)
    optimizer.json/.safetensors  the optimizer's state_dict: structure + hyper-parameters as JSON, moments as tensors
    scheduler.json             the learning-rate schedule's state_dict (when the stage has one)
    scaler.json                the fp16 gradient scaler's state (fp16 runs only)
    rng_state_<rank>.safetensors  Python, NumPy and torch random states of every process (metadata holds the first two)
    trainer_state.json         epoch, step, position in the epoch, best score, history, and a manifest of the files
                               above with their sizes and SHA-256, written last

A crash mid-save leaves the previous checkpoint and `LATEST` untouched; the stale temporary folder is removed by the
next save or resume. On resume every file is checked against the manifest, so a truncated or altered checkpoint is
named instead of half-loaded.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .state_io import (
    StateFileError,
    file_digest,
    load_module_state,
    load_tensors_json,
    read_json,
    save_module_state,
    save_rng_state,
    save_tensors_json,
    write_json_atomic,
)

STATE_FILE = "trainer_state.json"
LATEST_FILE = "LATEST"
MODEL_FILE = "model.safetensors"
OPTIMIZER = "optimizer"
SCHEDULER_FILE = "scheduler.json"
SCALER_FILE = "scaler.json"
RNG_PATTERN = "rng_state_{rank}.safetensors"
CHECKPOINT_FILES = (MODEL_FILE, f"{OPTIMIZER}.json", f"{OPTIMIZER}.safetensors", SCHEDULER_FILE, SCALER_FILE,
                    RNG_PATTERN.format(rank="<rank>"), STATE_FILE)  # fmt: skip
FORMAT = "hf-rrg/checkpoint/v2"
_EPOCH_PREFIX = "epoch_"
_STEP_PREFIX = "step_"
_TMP_PREFIX = ".tmp_"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message names the file and what to do."""


@dataclass
class CheckpointParts:
    """What one checkpoint holds besides the random states (`None`: not part of this stage)."""

    trainer_state: dict[str, Any]
    model_state: dict[str, Any] | None = None
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    scaler_state: dict[str, Any] | None = None


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_name(epoch: int, global_step: int, end_of_epoch: bool) -> str:
    """`epoch_NNNN` after a whole epoch, `step_NNNNNNNN` for a mid-epoch state."""
    return f"{_EPOCH_PREFIX}{epoch:04d}" if end_of_epoch else f"{_STEP_PREFIX}{global_step:08d}"


def is_complete(folder: Path) -> bool:
    """A checkpoint is complete when its trainer state (written last, before the rename) is there."""
    return folder.is_dir() and not folder.name.startswith(_TMP_PREFIX) and (folder / STATE_FILE).is_file()


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete `.tmp_*` entries left by an interrupted save in a checkpoint folder; returns what was removed."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for path in folder.glob(f"{_TMP_PREFIX}*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
    return removed


def _progress(folder: Path) -> tuple[int, int]:
    """(completed epochs, micro-batches into the next one): the order of checkpoints."""
    try:
        state = read_json(folder / STATE_FILE)
        return int(state["epoch"]) + 1, int(state.get("micro_step", 0))
    except (StateFileError, KeyError, TypeError, ValueError):
        return -1, -1


def _complete_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name.startswith((_EPOCH_PREFIX, _STEP_PREFIX)) and is_complete(p)]
    return sorted(found, key=lambda p: (_progress(p), p.name))


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete checkpoint in a checkpoint folder (`LATEST` first, else the furthest one), or None.
    A run folder (with `checkpoints/` inside) is accepted too."""
    folder = Path(folder)
    if (folder / "checkpoints").is_dir() and not folder.name == "checkpoints":
        folder = folder / "checkpoints"
    pointer = folder / LATEST_FILE
    if pointer.is_file():
        candidate = folder / pointer.read_text(encoding="utf-8").strip()
        if is_complete(candidate):
            return candidate
    complete = _complete_checkpoints(folder)
    return complete[-1] if complete else None


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    try:
        return read_json(checkpoint / STATE_FILE)
    except StateFileError as error:
        raise CheckpointError(f"checkpoint {checkpoint} cannot be resumed: {error}") from None


def _manifest(folder: Path) -> dict[str, dict[str, Any]]:
    return {
        path.name: {"bytes": path.stat().st_size, "sha256": file_digest(path)}
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name != STATE_FILE
    }


def save_checkpoint(accelerator: Any, folder: str | Path, name: str, parts: CheckpointParts, keep: int = 1) -> Path:
    """Write `parts` (main process) and every process's random states as checkpoint `name` in `folder`,
    atomically; keep the newest `keep` checkpoints. Call on every process."""
    folder = Path(folder)
    final, tmp = folder / name, folder / f"{_TMP_PREFIX}{name}"
    main = accelerator.is_main_process
    if main:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    save_rng_state(tmp / RNG_PATTERN.format(rank=accelerator.process_index))
    if main:
        if parts.model_state is not None:
            save_module_state(tmp / MODEL_FILE, parts.model_state)
        if parts.optimizer_state is not None:
            save_tensors_json(tmp, OPTIMIZER, parts.optimizer_state)
        for file_name, state in ((SCHEDULER_FILE, parts.scheduler_state), (SCALER_FILE, parts.scaler_state)):
            if state is not None:
                write_json_atomic(tmp / file_name, state)
    accelerator.wait_for_everyone()
    if main:
        trainer_state = {**parts.trainer_state, "format": FORMAT, "num_processes": accelerator.num_processes,
                         "files": _manifest(tmp)}  # fmt: skip
        write_json_atomic(tmp / STATE_FILE, trainer_state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_text_atomic(folder / LATEST_FILE, name)
        older = [path for path in _complete_checkpoints(folder) if path != final]
        for old in older[: max(len(older) - (keep - 1), 0)]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def verify_checkpoint(checkpoint: Path) -> dict[str, Any]:
    """The trainer state of `checkpoint` after checking every file of its manifest (present, same size, same
    SHA-256). Raises `CheckpointError` naming the damaged file; lists files the engine does not read."""
    state = read_trainer_state(checkpoint)
    if state.get("format") != FORMAT or not isinstance(state.get("files"), dict):
        raise CheckpointError(
            f"checkpoint {checkpoint} was not written by this version of hf-rrg's engine (format "
            f"{state.get('format')!r}, expected {FORMAT!r}); it cannot be resumed. Start a new run (--output-dir)."
        )
    for file_name, expected in state["files"].items():
        path = checkpoint / file_name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {checkpoint} is incomplete: {file_name} is missing. {_ADVICE}")
        if path.stat().st_size != expected.get("bytes") or file_digest(path) != expected.get("sha256"):
            raise CheckpointError(
                f"checkpoint file {path} is damaged (its size or SHA-256 differs from the one recorded when it was "
                f"saved). {_ADVICE}"
            )
    return state


_ADVICE = "Delete that checkpoint folder to resume from an older one, or start a new run (--output-dir)."


def unknown_files(checkpoint: Path, state: dict[str, Any]) -> list[str]:
    """Files in `checkpoint` that the engine neither wrote nor reads (e.g. a planted pickle): never loaded."""
    known = set(state.get("files", {})) | {STATE_FILE}
    return sorted(p.name for p in checkpoint.iterdir() if p.name not in known)


def load_checkpoint_parts(checkpoint: Path, state: dict[str, Any], device: Any = "cpu") -> CheckpointParts:
    """The model, optimizer, scheduler and scaler states of a verified checkpoint (tensors on `device`)."""
    files = state["files"]
    try:
        return CheckpointParts(
            trainer_state=state,
            model_state=load_module_state(checkpoint / MODEL_FILE) if MODEL_FILE in files else None,
            optimizer_state=load_tensors_json(checkpoint, OPTIMIZER, device) if f"{OPTIMIZER}.json" in files else None,
            scheduler_state=read_json(checkpoint / SCHEDULER_FILE) if SCHEDULER_FILE in files else None,
            scaler_state=read_json(checkpoint / SCALER_FILE) if SCALER_FILE in files else None,
        )
    except StateFileError as error:
        raise CheckpointError(f"checkpoint {checkpoint} cannot be resumed: {error}. {_ADVICE}") from None


def rng_state_file(checkpoint: Path, rank: int) -> Path:
    return checkpoint / RNG_PATTERN.format(rank=rank)


__all__ = [
    "CHECKPOINT_FILES",
    "CheckpointError",
    "CheckpointParts",
    "checkpoint_name",
    "checkpoints_dir",
    "is_complete",
    "latest_checkpoint",
    "load_checkpoint_parts",
    "read_trainer_state",
    "remove_stale_temporaries",
    "rng_state_file",
    "save_checkpoint",
    "unknown_files",
    "verify_checkpoint",
]
