"""Read what `hf-rrg export` needs from a training run folder, or from a plain saved model folder.

A run folder (written by `hf-rrg train --output-dir RUN_DIR`) holds ``model/`` (the model and processor, saved with
``save_pretrained``), ``metrics.json`` (``{"test": {...}, "validation": {...}, ...}`` or a flat ``{name: value}``
mapping, taken as test scores) and the training config (``config.yaml``; ``config.yml``, ``train_config.yaml``,
``training_config.yaml`` or ``training_config.json`` are read too). A plain model folder (``config.json`` +
weights + processor files, e.g. an exported repo) is accepted as well; its own ``metrics.json`` and
``training_config.yaml``, when present, are used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..text_files import read_text

MODEL_SUBDIR = "model"
METRICS_FILE = "metrics.json"
TRAINING_CONFIG_FILES = (
    "config.yaml",
    "config.yml",
    "train_config.yaml",
    "training_config.yaml",
    "training_config.yml",
    "training_config.json",
)
# Keys of metrics.json that hold the scores of a split (the first one found wins).
TEST_KEYS = ("test", "test_metrics", "test_scores")
VALIDATION_KEYS = ("validation", "val", "best_validation", "best_val", "val_metrics", "validation_metrics")


@dataclass
class RunInfo:
    """A model folder and what its run measured and was trained with."""

    model_dir: Path
    run_dir: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    training_config: dict[str, Any] | None = None
    training_config_text: str | None = None
    training_config_file: Path | None = None

    @property
    def test_metrics(self) -> dict[str, float]:
        """Numeric test-split scores (`metrics.json`'s ``test`` section, or its flat numeric entries)."""
        return split_metrics(self.metrics, TEST_KEYS, flat_fallback=True)

    @property
    def validation_metrics(self) -> dict[str, float]:
        """Numeric validation scores of the selected checkpoint, when the run recorded them: a validation section
        of metrics.json, else the ``val_history`` record of ``best_epoch`` (1-based; records count epochs from 0,
        as `hf-rrg train` writes them)."""
        scores = split_metrics(self.metrics, VALIDATION_KEYS, flat_fallback=False)
        if scores:
            return scores
        best, history = self.metrics.get("best_epoch"), self.metrics.get("val_history")
        if isinstance(best, int) and isinstance(history, list):
            for record in history:
                if isinstance(record, Mapping) and record.get("epoch") == best - 1:
                    return _numbers({k[4:]: v for k, v in record.items() if str(k).startswith("val/")})
        return {}

    @property
    def dataset(self) -> str | None:
        """Name of the training data (builder name) from the training config or metrics, if recorded."""
        return dataset_name(self.training_config, self.metrics)


def read_run(source: str | Path) -> RunInfo:
    """Locate the model folder of `source` (a run folder with ``model/``, or a model folder) and read the run's
    metrics and training config. Raises FileNotFoundError naming what is missing."""
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(
            f"{source} does not exist or is not a folder; pass a training run folder or a model folder."
        )
    if (source / MODEL_SUBDIR / "config.json").is_file():
        run_dir, model_dir = source, source / MODEL_SUBDIR
    elif (source / "config.json").is_file():
        run_dir, model_dir = None, source
    else:
        raise FileNotFoundError(
            f"{source} is neither a training run folder (no {MODEL_SUBDIR}/config.json) nor a model folder (no "
            "config.json). Pass the folder given to `hf-rrg train --output-dir`, or a `save_pretrained` folder."
        )
    base = run_dir or model_dir
    info = RunInfo(model_dir=model_dir, run_dir=run_dir)
    metrics_path = base / METRICS_FILE
    if metrics_path.is_file():
        try:
            info.metrics = json.loads(read_text(metrics_path))
        except json.JSONDecodeError as error:
            raise ValueError(f"{metrics_path} is not valid JSON ({error}); fix or delete it.") from error
        if not isinstance(info.metrics, dict):
            raise ValueError(f"{metrics_path} must hold a JSON object, got {type(info.metrics).__name__}.")
    candidates = TRAINING_CONFIG_FILES if run_dir is not None else TRAINING_CONFIG_FILES[3:]
    for name in candidates:
        path = base / name
        if path.is_file():
            info.training_config_file = path
            info.training_config_text = read_text(path)
            try:
                loaded = (
                    json.loads(info.training_config_text)
                    if path.suffix == ".json"
                    else yaml.safe_load(info.training_config_text)
                )
            except (json.JSONDecodeError, yaml.YAMLError) as error:
                raise ValueError(f"Training config {path} cannot be parsed ({error}); fix or delete it.") from error
            info.training_config = loaded if isinstance(loaded, dict) else None
            break
    return info


def split_metrics(metrics: Mapping[str, Any], keys: tuple[str, ...], flat_fallback: bool) -> dict[str, float]:
    """Numeric entries of the first section of `metrics` named in `keys`; with `flat_fallback`, the top-level
    numeric entries when no section exists. NaN and non-numbers are dropped."""
    for key in keys:
        section = metrics.get(key)
        if isinstance(section, Mapping):
            return _numbers(section)
    if flat_fallback and not any(isinstance(metrics.get(key), Mapping) for key in VALIDATION_KEYS):
        return _numbers(metrics)
    return {}


def _numbers(section: Mapping[str, Any]) -> dict[str, float]:
    return {
        str(name): float(value)
        for name, value in section.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    }


def dataset_name(training_config: Mapping[str, Any] | None, metrics: Mapping[str, Any] | None = None) -> str | None:
    """The training data's builder name: ``data.name`` / ``data.builder`` / ``dataset.name`` / ``dataset`` of the
    training config, else ``dataset`` of metrics.json."""
    for source in (training_config or {}, metrics or {}):
        for outer in ("data", "dataset"):
            value = source.get(outer)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, Mapping):
                for inner in ("name", "builder", "dataset"):
                    if isinstance(value.get(inner), str) and value[inner]:
                        return value[inner]
    return None
