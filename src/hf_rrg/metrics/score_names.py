"""The score names each metric family returns, known without computing anything (config checks use them before
the first training step; `tests/test_metrics_score_names.py` checks them against real outputs)."""

from __future__ import annotations

from collections.abc import Iterable

_LABEL_SCORES = tuple(f"{group}_{measure}" for group in ("micro", "macro") for measure in ("precision", "recall", "f1"))

#: family -> the names of the scores `evaluate_reports(metrics=[family])` returns.
SCORE_NAMES: dict[str, tuple[str, ...]] = {
    "bleu": ("bleu_1", "bleu_2", "bleu_3", "bleu_4"),
    "rouge_l": ("rouge_l",),
    "cider_d": ("cider_d",),
    "cider": ("cider",),
    "meteor": ("meteor",),
    "ce": tuple(f"ce_{name}" for name in (*_LABEL_SCORES, "example_precision", "example_recall", "example_f1")),
    "bertscore": ("bertscore_precision", "bertscore_recall", "bertscore_f1"),
    "f1chexbert": tuple(f"f1chexbert_{name}_{size}" for size in (14, 5) for name in _LABEL_SCORES),
    "radgraph": tuple(f"radgraph_f1_{level}" for level in ("simple", "partial", "complete")),
    "ratescore": ("ratescore",),
}


def score_names(families: Iterable[str]) -> list[str]:
    """The score names of `families`, in family order (unknown families contribute none)."""
    return [name for family in families for name in SCORE_NAMES.get(family, ())]


__all__ = ["SCORE_NAMES", "score_names"]
