"""What `--resume` may continue: the run's own config (`RUN_DIR/config.yaml`) against the one given now.

A resumed run continues the same trajectory only with the same settings. Changes that do not alter it (more
epochs, patience, logging, workers, where the data lies, the test metrics) are accepted and recorded; any other
change (seed, batch size, learning rate, model, data, ...) is refused unless `--resume-with-changes` is given, and
then recorded too (`RUN_DIR/resume_changes.jsonl`: time, each changed key with its old and new value, and whether
`--resume-with-changes` accepted it). Another method's run is never resumed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import TrainingConfig

CONFIG_FILE = "config.yaml"
CHANGES_FILE = "resume_changes.jsonl"

#: Keys whose change leaves the run's trajectory as it was (a `recipe_options` key ending in `epochs` too).
TRAJECTORY_NEUTRAL = (
    "training.epochs", "training.patience", "training.num_workers", "training.keep_checkpoints",
    "training.log_every", "training.eval_batch_size", "training.checkpoint_every_steps", "evaluation.test_metrics",
    "data.data_dir", "recipe_options.progress",
)  # fmt: skip


class ResumeError(ValueError):
    """A run that cannot be resumed as asked; the message says why and what to do."""


@dataclass(frozen=True)
class ResumePolicy:
    """How a run folder that already holds training is treated.

    Attributes:
        resume: continue from the newest complete checkpoint (`--resume`).
        with_changes: accept config changes that alter the trajectory, and record them (`--resume-with-changes`).
        inexact: continue even when a checkpoint's random states cannot be read (`--resume-inexact`); the resumed
            run then does not repeat the interrupted one.
    """

    resume: bool = False
    with_changes: bool = False
    inexact: bool = False


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and (data or not prefix):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: data}


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """`{dotted key: (old value, new value)}` of every leaf that differs."""
    before, after = _flatten(old), _flatten(new)
    return {key: (before.get(key), after.get(key)) for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)}  # fmt: skip


def trajectory_neutral(key: str) -> bool:
    return key in TRAJECTORY_NEUTRAL or (key.startswith("recipe_options.") and key.endswith("epochs"))


def _normalised(data: dict[str, Any]) -> dict[str, Any]:
    """A saved config with today's defaults filled in (raw when it no longer validates)."""
    from .config import ConfigError, config_from_dict

    try:
        return config_from_dict(data).to_dict()
    except ConfigError:
        return data


def saved_config(run_dir: Path) -> dict[str, Any] | None:
    """The config a run folder was trained with, or None when it has none."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ResumeError(
            f"{path} is damaged ({error}); restore it from the run's exported model or start anew"
        ) from None
    if not isinstance(data, dict):
        raise ResumeError(f"{path} is not a training config (a YAML mapping); restore it or start a new run")
    return data


def check_resume_config(run_dir: Path, config: TrainingConfig, policy: ResumePolicy) -> dict[str, tuple[Any, Any]]:
    """The changes of `config` against the run's saved config; refuses another method, and (without
    `policy.with_changes`) changes that alter the trajectory. Reads only: call it on every process."""
    run_dir = Path(run_dir)
    old = saved_config(run_dir)
    if old is None:
        return {}
    new = config.to_dict()
    if old.get("method") != new["method"]:
        raise ResumeError(
            f"{run_dir} holds a {old.get('method')!r} run; this config trains {new['method']!r}. Resume it with its "
            f"own config ({run_dir / CONFIG_FILE}) or choose a new --output-dir"
        )
    changes = config_changes(_normalised(old), new)
    refused = {key: change for key, change in changes.items() if not trajectory_neutral(key)}
    if refused and not policy.with_changes:
        raise ResumeError(
            f"the config differs from the one {run_dir} was trained with ({describe_changes(refused)}); the resumed "
            f"run would not continue the same training. Resume with {run_dir / CONFIG_FILE}, choose a new "
            "--output-dir, or pass --resume-with-changes to accept and record the changes"
        )
    return changes


def record_config_changes(run_dir: Path, config: TrainingConfig, changes: dict[str, tuple[Any, Any]]) -> None:
    """Append the accepted `changes` to `RUN_DIR/resume_changes.jsonl` and save the new config (main process)."""
    if not changes:
        return
    refused = [key for key in changes if not trajectory_neutral(key)]
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "accepted_with_flag": refused,
              "changes": {key: {"old": a, "new": b} for key, (a, b) in changes.items()}}  # fmt: skip
    with open(Path(run_dir) / CHANGES_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
    save_config(config, Path(run_dir) / CONFIG_FILE)


def save_config(config: TrainingConfig, path: Path) -> None:
    """`config.save` through a temporary sibling and one rename."""
    tmp = path.with_name(f".tmp_{path.name}")
    config.save(tmp)
    os.replace(tmp, path)


def prepare_run_folder(
    run_dir: Path, config: TrainingConfig, policy: ResumePolicy, state: Any, existing: Path | None = None,
    allow_changes: bool = False,
) -> dict[str, tuple[Any, Any]]:
    """Check and set up a run folder on every process: refuse to start over a run (`existing` is there) without
    `--resume`, check the config against the saved one (`allow_changes`: a stage re-run alone may change it),
    then on the main process create the folder, record accepted changes and save the config. Returns the changes."""
    run_dir = Path(run_dir)
    if not policy.resume and existing is not None and existing.exists():
        raise FileExistsError(
            f"{run_dir} already holds a training run; pass --resume to continue it or choose a new --output-dir"
        )
    changes: dict[str, tuple[Any, Any]] = {}
    if policy.resume or allow_changes:
        checked = ResumePolicy(policy.resume, policy.with_changes or allow_changes, policy.inexact)
        changes = check_resume_config(run_dir, config, checked)
    state.wait_for_everyone()
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        if changes:
            record_config_changes(run_dir, config, changes)
        elif not (policy.resume or allow_changes) or not (run_dir / CONFIG_FILE).is_file():
            save_config(config, run_dir / CONFIG_FILE)  # a fresh run; a continued one keeps its unchanged file
    state.wait_for_everyone()
    return changes


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{key}: {a!r} -> {b!r}" for key, (a, b) in changes.items())


__all__ = [
    "CHANGES_FILE",
    "CONFIG_FILE",
    "TRAJECTORY_NEUTRAL",
    "ResumeError",
    "ResumePolicy",
    "check_resume_config",
    "config_changes",
    "describe_changes",
    "record_config_changes",
    "prepare_run_folder",
    "save_config",
    "saved_config",
    "trajectory_neutral",
]
