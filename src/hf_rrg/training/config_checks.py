"""Checks of a `TrainingConfig` that would otherwise train silently wrong, run when the config is read.

- numbers: every number in the config is finite (no NaN / inf learning rate); learning rates, weight decay and the
  other optimizer settings are >= 0, Adam's betas in [0, 1), schedule, clipping, patience, seed and generation
  settings in their ranges;
- keys: `model:` holds only arguments of the method's config class (its ``__init__`` signature and its parents';
  another method's options or a typo are refused, naming the valid keys) and none that the tokenizer sets;
  `image_processor:` only `RRGImageProcessor` settings; `method` is an hf-rrg method;
- metrics: the metric families of `evaluation.val_metrics` / `test_metrics` exist, the protocol exists, and
  `training.val_metric` is one of the scores the validation families produce (found now, not after an epoch).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Iterator
from typing import Any

from .config import ConfigError, TrainingConfig

# The scores each metric family of `hf_rrg.metrics.evaluate_reports` returns (see docs/metrics.md).
# Model config fields the training sets from the tokenizer: a value in `model:` would be silently replaced.
TOKENIZER_FIELDS = ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id")
SEED_RANGE = (0, 2**32 - 1)  # numpy's legacy seeding accepts no other values


def check_config(config: TrainingConfig) -> None:
    """Every check of this module; the first failure is a `ConfigError` naming the key and what to do."""
    check_finite(config)
    check_ranges(config)
    check_method_keys(config)
    check_metrics(config)


# ------------------------------------------------------------------------------------------------ numbers


def _numbers(value: Any, where: str) -> Iterator[tuple[str, float]]:
    if isinstance(value, float):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{where}[{index}]")


def check_finite(config: TrainingConfig) -> None:
    """No NaN or infinite number anywhere in the config (typed sections, `model`, `image_processor`, options)."""
    for where, value in _numbers(config.to_dict(), ""):
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value}")


def _require(condition: bool, where: str, rule: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"{where} must be {rule}, got {value}")


def check_ranges(config: TrainingConfig) -> None:
    """Signs and ranges of the optimizer, schedule, loop, data and generation settings."""
    optimizer = config.optimizer
    for field in dataclasses.fields(optimizer):  # learning rates, weight decay, momentum, eps, ...
        value = getattr(optimizer, field.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _require(value >= 0, f"optimizer.{field.name}", ">= 0", value)
    if getattr(optimizer, "eps", None) is not None:
        _require(optimizer.eps > 0, "optimizer.eps", "> 0", optimizer.eps)
    for index, beta in enumerate(optimizer.betas):
        _require(0 <= beta < 1, f"optimizer.betas[{index}]", "in [0, 1)", beta)

    scheduler = config.scheduler
    _require(scheduler.step_size >= 1, "scheduler.step_size", ">= 1", scheduler.step_size)
    _require(scheduler.gamma > 0, "scheduler.gamma", "> 0", scheduler.gamma)
    _require(scheduler.warmup_epochs >= 0, "scheduler.warmup_epochs", ">= 0", scheduler.warmup_epochs)

    loop = config.training
    for name in ("clip_grad_value", "max_grad_norm"):
        value = getattr(loop, name)
        _require(value is None or value > 0, f"training.{name}", "> 0 or null (off)", value)
    _require(loop.patience is None or loop.patience >= 1, "training.patience", ">= 1 or null (never stop)", loop.patience)
    _require(loop.num_workers >= 0, "training.num_workers", ">= 0", loop.num_workers)
    low, high = SEED_RANGE
    _require(low <= loop.seed <= high, "training.seed", f"in [{low}, {high}]", loop.seed)

    for name in ("max_train_samples", "max_validation_samples", "max_test_samples"):
        value = getattr(config.data, name)
        _require(value is None or value >= 1, f"data.{name}", ">= 1 or null", value)

    for field in dataclasses.fields(config.generation):
        value = getattr(config.generation, field.name)
        if isinstance(value, int) and not isinstance(value, bool):
            at_least_one = field.name == "num_beams" or "length" in field.name or "tokens" in field.name
            _require(value >= (1 if at_least_one else 0), f"generation.{field.name}", ">= 1" if at_least_one else ">= 0", value)


# ------------------------------------------------------------------------------------------------ keys


def config_class_keys(config_class: type) -> list[str]:
    """The keyword arguments a config class accepts: the named parameters of its ``__init__`` and its parents'."""
    names: dict[str, None] = {}
    for cls in config_class.__mro__:
        init = vars(cls).get("__init__")
        if init is None:
            continue
        for name, parameter in inspect.signature(init).parameters.items():
            if name != "self" and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                names.setdefault(name)
        if cls.__name__ == "PreTrainedConfig":
            break
    return list(names)


def _check_keys(given: dict[str, Any], valid: list[str], where: str, owner: str) -> None:
    unknown = [f"{where}.{key}" for key in given if key not in valid]
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} for {owner}; its valid keys are {sorted(valid)}. Fix the spelling or remove "
            "the key (another method's options do not apply here)."
        )
    for key in TOKENIZER_FIELDS:
        if key in given:
            raise ConfigError(f"{where}.{key} is set from the tokenizer (the report vocabulary); remove it from the config")


def check_method_keys(config: TrainingConfig) -> None:
    """`method` is an hf-rrg method; `model` / `image_processor` hold only keys their classes accept."""
    import hf_rrg  # noqa: F401  (registers the model types)
    from transformers import CONFIG_MAPPING

    from ..modeling.image_processing_rrg import RRGImageProcessor
    from .recipes import RECIPES

    if config.recipe is None and config.method not in RECIPES:
        raise ConfigError(f"method {config.method!r} is not an hf-rrg method; choose one of {sorted(RECIPES)}")
    if config.method in CONFIG_MAPPING:
        config_class = CONFIG_MAPPING[config.method]
        _check_keys(config.model, config_class_keys(config_class), "model", f"method {config.method!r}")
        backbone = config.model.get("backbone_config")
        if isinstance(backbone, dict) and "backbone_config" in config_class_keys(config_class):
            _check_backbone_keys(backbone)
    processor_keys = [key for key in RRGImageProcessor().to_dict() if key not in ("image_processor_type", "return_tensors")]
    _check_keys(config.image_processor, processor_keys, "image_processor", "RRGImageProcessor")


def _check_backbone_keys(backbone: dict[str, Any]) -> None:
    """ITHN's nested `model.backbone_config` holds the keys of the backbone's own config class."""
    from ..modeling.configuration_ithn import BACKBONE_CONFIGS

    model_type = backbone.get("model_type", "r2gencmn")
    if model_type not in BACKBONE_CONFIGS:
        raise ConfigError(
            f"model.backbone_config.model_type {model_type!r} is not an ITHN backbone; use one of {sorted(BACKBONE_CONFIGS)}"
        )
    valid = ["model_type", *config_class_keys(BACKBONE_CONFIGS[model_type])]
    _check_keys(backbone, valid, "model.backbone_config", f"backbone {model_type!r}")


# ------------------------------------------------------------------------------------------------ metrics


def check_metrics(config: TrainingConfig) -> None:
    """Metric families, protocol and `training.val_metric` name what the evaluation computes."""
    check_evaluation(config.evaluation, config.training.val_metric)


def check_evaluation(evaluation: Any, val_metric: str | None) -> None:
    """`evaluation`'s protocol and metric families are known and `val_metric` (unless None) is one of the
    validation scores: a `ConfigError` otherwise. Runs when a config is loaded and again before the first training
    step (a config built in Python may have been changed since)."""
    from ..metrics import METRICS, PROTOCOLS
    from ..metrics.score_names import score_names

    if evaluation.protocol not in PROTOCOLS:
        raise ConfigError(f"evaluation.protocol must be one of {list(PROTOCOLS)}, got {evaluation.protocol!r}")
    for section in ("val_metrics", "test_metrics"):
        unknown = [name for name in getattr(evaluation, section) if name not in METRICS]
        if unknown:
            raise ConfigError(f"evaluation.{section} has unknown metric(s) {unknown}; choose from {list(METRICS)}")
    scores = score_names(evaluation.val_metrics)
    if val_metric is not None and val_metric not in scores:
        raise ConfigError(
            f"training.val_metric {val_metric!r} is not a score of evaluation.val_metrics "
            f"{list(evaluation.val_metrics)}; choose one of {scores}, or add its family to evaluation.val_metrics"
        )


__all__ = [
    "TOKENIZER_FIELDS",
    "check_config",
    "check_evaluation",
    "check_finite",
    "check_method_keys",
    "check_metrics",
    "check_ranges",
    "config_class_keys",
]
