"""Generation over a (possibly sharded) evaluation loader and scoring with `hf_rrg.metrics`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from hf_rrg.metrics.evaluate_reports import LEARNED_METRICS

logger = logging.getLogger(__name__)

# Families whose failure (e.g. no Java for METEOR) is reported and skipped rather than ending the run.
OPTIONAL_METRICS = ("meteor", "ce", *LEARNED_METRICS)


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


__all__ = [
    "OPTIONAL_METRICS",
    "generate_reports",
    "score_reports",
]
