"""`evaluate_reports`: every metric of a report-generation evaluation from one call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .bleu import bleu
from .cider import cider_d, cider_original
from .clinical import Labeler, clinical_efficacy
from .protocols import prepare_texts
from .rouge import rouge_l

METRICS = ("bleu", "rouge_l", "cider_d", "cider", "meteor", "ce")
DEFAULT_METRICS = ("bleu", "rouge_l", "cider_d", "meteor", "ce")


def check_references(references: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    """One non-empty list of non-empty reference strings per item; errors name the item."""
    checked = []
    for index, item in enumerate(references):
        refs = [item] if isinstance(item, str) else list(item)
        if not refs:
            raise ValueError(f"item {index} has no reference; every prediction needs one")
        for ref in refs:
            if not isinstance(ref, str) or not ref.strip():
                raise ValueError(
                    f"item {index} has an empty reference ({ref!r}); remove the item or supply its reference report"
                )
        checked.append(refs)
    return checked


def evaluate_reports(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    protocol: str = "default",
    tokenizer: Any = None,
    max_seq_length: int | None = None,
    labeler: Labeler | None = None,
    *,
    cleaner: str | None = None,
    ptb: bool = False,
    uncertain: int = 0,
) -> dict[str, float]:
    """Score generated reports against references; returns a flat ``{score name: value}`` dict.

    `metrics` picks from ``bleu`` (BLEU-1..4), ``rouge_l``, ``cider_d``, ``cider`` (original CIDEr),
    ``meteor`` (Java) and ``ce`` (clinical efficacy with `labeler`, default `hf_rrg.labeling.CheXpertLabeler()`,
    uncertain labels mapped to `uncertain`). `protocol` (``default``, ``r2gen``, ``chinese``), `tokenizer`
    (an `RRGTokenizer` or its directory), `max_seq_length` (``r2gen`` only), `cleaner` and `ptb` decide the
    scored strings (see `hf_rrg.metrics.protocols`). Empty predictions are scored; empty references raise.
    CE labels the protocol's cleaned strings (before PTB tokenization) of the first reference of each item.
    """
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    if isinstance(predictions, str):
        raise TypeError("predictions must be a sequence of strings, not a single str")
    predictions = list(predictions)
    reference_lists = check_references(references)
    if len(predictions) != len(reference_lists):
        raise ValueError(f"got {len(predictions)} predictions but {len(reference_lists)} references")
    if not predictions:
        raise ValueError("nothing to evaluate: no predictions were given")
    for index, prediction in enumerate(predictions):
        if not isinstance(prediction, str):
            raise TypeError(f"prediction {index} is a {type(prediction).__name__}, expected str")

    preds, refs = prepare_texts(
        predictions, reference_lists, protocol=protocol, tokenizer=tokenizer, max_seq_length=max_seq_length,
        cleaner=cleaner,
    )
    nlg_preds, nlg_refs = preds, refs
    if ptb:
        if protocol != "default":
            raise ValueError(f"the PTB tokenizer is an option of protocol 'default', not {protocol!r}")
        from .ptb import ptb_tokenize

        sizes = [len(item) for item in refs]
        tokens = ptb_tokenize(preds + [text for item in refs for text in item])
        nlg_preds, flat, nlg_refs, start = tokens[: len(preds)], tokens[len(preds) :], [], 0
        for size in sizes:
            nlg_refs.append(flat[start : start + size])
            start += size

    scores: dict[str, float] = {}
    for name in metrics:
        if name == "bleu":
            scores.update(bleu(nlg_preds, nlg_refs).corpus)
        elif name == "rouge_l":
            scores.update(rouge_l(nlg_preds, nlg_refs).corpus)
        elif name == "cider_d":
            scores.update(cider_d(nlg_preds, nlg_refs).corpus)
        elif name == "cider":
            scores.update(cider_original(nlg_preds, nlg_refs).corpus)
        elif name == "meteor":
            from .meteor import meteor

            scores.update(meteor(nlg_preds, nlg_refs).corpus)
        elif name == "ce":
            result = clinical_efficacy(preds, [item[0] for item in refs], labeler=labeler, uncertain=uncertain)
            scores.update(result.as_dict())
    return scores
