"""Training logs: append-only JSON-lines files (one record per optimizer step, one per epoch) written by the main
process, cut back to a checkpoint when a run resumes; and the one-line summaries printed per epoch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class JsonlLog:
    """Append-only JSON-lines log written by the main process."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def truncate_after(self, key: str, last: int) -> None:
        """Drop records whose `key` is beyond `last` (written after the checkpoint a resume starts from)."""
        if self.enabled and self.path.is_file():
            kept = [record for record in self.records() if record.get(key, -1) <= last]
            self.path.write_text("".join(json.dumps(record) + "\n" for record in kept), encoding="utf-8")

    def clear(self) -> None:
        if self.enabled and self.path.exists():
            self.path.unlink()


def step_log_path(logs_dir: Path, task: str) -> Path:
    """`logs/<task>_steps.jsonl` (`train_steps.jsonl` for the report generator)."""
    return logs_dir / f"{task}_steps.jsonl"


def epoch_log_path(logs_dir: Path, task: str) -> Path:
    """`logs/epochs.jsonl` for the report generator's `train` task, `logs/<task>_epochs.jsonl` for the others."""
    return logs_dir / ("epochs.jsonl" if task == "train" else f"{task}_epochs.jsonl")


def tracker_name(task: str) -> str:
    """TensorBoard run folder under `logs/`: `tensorboard` for `train`, `tensorboard/<task>` for the others."""
    return "tensorboard" if task == "train" else f"tensorboard/{task}"


def epoch_summary(task: str, epoch: int, epochs: int, record: dict[str, Any]) -> str:
    shown = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k.startswith(("train/", "val/")) and v is not None)
    prefix = "" if task == "train" else f"{task} "
    return f"{prefix}epoch {epoch + 1}/{epochs}: {shown}"


__all__ = ["JsonlLog", "epoch_log_path", "epoch_summary", "step_log_path", "tracker_name"]
