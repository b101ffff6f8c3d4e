"""Generation over a (possibly sharded) evaluation loader and scoring with `hf_rrg.metrics`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

# Families whose failure (e.g. no Java for METEOR) is reported and skipped rather than ending the run.
OPTIONAL_METRICS = ("meteor", "ce")


@torch.no_grad()
def generate_reports(
    accelerator: Any,
    model: torch.nn.Module,
    loader: Any,
    tokenizer: Any,
    generation_kwargs: dict[str, Any],
    description: str = "generate",
) -> dict[int, str]:
    """Generate a report for every example of `loader` (sharded across processes); returns {index: report} on
    every process (gathered, duplicates from uneven sharding dropped). Every batch field but `index` is passed to
    `generate` (images, view mask, and a recipe's evaluation fields when it has any)."""
    unwrapped = accelerator.unwrap_model(model)
    was_training = unwrapped.training
    unwrapped.eval()
    pad = unwrapped.config.pad_token_id
    reports: dict[int, str] = {}
    for batch in tqdm(loader, desc=description, disable=not accelerator.is_local_main_process, leave=False):
        with accelerator.autocast():
            inputs = {key: value for key, value in batch.items() if key != "index"}
            ids = unwrapped.generate(**inputs, **generation_kwargs)
        ids = accelerator.pad_across_processes(ids, dim=1, pad_index=pad)
        indices, ids = accelerator.gather_for_metrics((batch["index"], ids))
        texts = tokenizer.batch_decode(ids.cpu().tolist(), skip_special_tokens=True)
        for index, text in zip(indices.cpu().tolist(), texts):
            reports[int(index)] = text
    unwrapped.train(was_training)
    return reports


def score_reports(
    predictions: Sequence[str],
    references: Sequence[str],
    metrics: Sequence[str],
    protocol: str,
    tokenizer: Any,
    max_seq_length: int | None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Scores of each metric family; returns (scores, {family: error}) where an optional family that failed is
    listed with its error instead of ending the run."""
    from hf_rrg.metrics import evaluate_reports

    scores: dict[str, float] = {}
    errors: dict[str, str] = {}
    kwargs: dict[str, Any] = {"protocol": protocol, "tokenizer": tokenizer}
    if protocol == "r2gen":
        kwargs["max_seq_length"] = max_seq_length
    for family in metrics:
        try:
            scores.update(evaluate_reports(list(predictions), list(references), metrics=[family], **kwargs))
        except Exception as error:  # noqa: BLE001 - an optional metric must not end a finished training run
            if family not in OPTIONAL_METRICS:
                raise
            errors[family] = f"{type(error).__name__}: {error}"
            logger.warning("metric %s skipped: %s", family, errors[family])
    return scores, errors


_PROBE = ["the heart is normal in size .", "there is no pleural effusion ."]


def check_metric_families(evaluation: Any) -> None:
    """`evaluation.val_metrics` / `test_metrics` name known metric families (a `ConfigError` otherwise)."""
    from hf_rrg.metrics.evaluate_reports import METRICS

    from .config import ConfigError

    for where, families in (("val_metrics", evaluation.val_metrics), ("test_metrics", evaluation.test_metrics)):
        unknown = [family for family in families if family not in METRICS]
        if unknown:
            raise ConfigError(
                f"evaluation.{where} has unknown metric families {unknown}; choose from {list(METRICS)}"
            )


def score_names(families: Sequence[str]) -> set[str]:
    """The score names `score_reports` returns for `families` (found by scoring two probe reports; METEOR, which
    needs Java, is named `meteor`)."""
    from hf_rrg.metrics import evaluate_reports

    names: set[str] = set()
    for family in families:
        if family == "meteor":
            names.add("meteor")
        else:
            names.update(evaluate_reports(_PROBE, _PROBE, metrics=[family], protocol="default"))
    return names


def check_metric_names(evaluation: Any, val_metric: str) -> None:
    """Before the first step: known metric families, and a `training.val_metric` that validation produces."""
    from .config import ConfigError

    check_metric_families(evaluation)
    names = score_names(evaluation.val_metrics)
    if val_metric not in names:
        raise ConfigError(
            f"training.val_metric {val_metric!r} is not among the validation scores {sorted(names)} (of "
            f"evaluation.val_metrics {list(evaluation.val_metrics)}); choose one of them or add its family"
        )


__all__ = [
    "OPTIONAL_METRICS",
    "check_metric_families",
    "check_metric_names",
    "generate_reports",
    "score_names",
    "score_reports",
]
