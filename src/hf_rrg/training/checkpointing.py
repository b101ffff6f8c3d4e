"""Atomic epoch checkpoints: `accelerator.save_state` into a temporary folder, then one rename.

Layout under `RUN_DIR/checkpoints/`: `epoch_0003/` (a complete Accelerate state + `trainer_state.json`, which is
written last), `LATEST` (the name of the newest complete checkpoint, replaced atomically) and, only while a save is
in progress or after a crash during one, `.tmp_epoch_0004/`. A crash mid-save leaves the previous checkpoint and
`LATEST` untouched; the stale temporary folder is removed by the next save or resume.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

STATE_FILE = "trainer_state.json"
LATEST_FILE = "LATEST"
_PREFIX = "epoch_"
_TMP_PREFIX = ".tmp_"


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def is_complete(folder: Path) -> bool:
    """A checkpoint is complete when its trainer state (written last, before the rename) is there."""
    return folder.is_dir() and not folder.name.startswith(_TMP_PREFIX) and (folder / STATE_FILE).is_file()


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete `.tmp_*` folders left by an interrupted save; returns what was removed."""
    folder = checkpoints_dir(run_dir)
    removed = []
    if folder.is_dir():
        for path in folder.glob(f"{_TMP_PREFIX}*"):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (`LATEST` first, else the highest complete `epoch_*`), or None."""
    folder = checkpoints_dir(run_dir)
    pointer = folder / LATEST_FILE
    if pointer.is_file():
        candidate = folder / pointer.read_text(encoding="utf-8").strip()
        if is_complete(candidate):
            return candidate
    complete = sorted(path for path in folder.glob(f"{_PREFIX}*") if is_complete(path)) if folder.is_dir() else []
    return complete[-1] if complete else None


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))


def save_checkpoint(accelerator: Any, run_dir: str | Path, epoch: int, state: dict[str, Any], keep: int = 1) -> Path:
    """Save the Accelerate state (model, optimizer, registered scheduler, RNG states of every process) and
    `state` for `epoch`, atomically; keep the newest `keep` checkpoints. Call on every process."""
    folder = checkpoints_dir(run_dir)
    final = folder / f"{_PREFIX}{epoch:04d}"
    tmp = folder / f"{_TMP_PREFIX}{final.name}"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(run_dir)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _write_atomic(tmp / STATE_FILE, json.dumps(state, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_atomic(folder / LATEST_FILE, final.name)
        complete = sorted(path for path in folder.glob(f"{_PREFIX}*") if is_complete(path))
        for old in complete[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


__all__ = [
    "checkpoints_dir",
    "is_complete",
    "latest_checkpoint",
    "read_trainer_state",
    "remove_stale_temporaries",
    "save_checkpoint",
]
