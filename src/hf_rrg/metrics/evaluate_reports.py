"""`evaluate_reports`: every metric of a report-generation evaluation from one call.

`evaluate_detailed` is the same evaluation keeping what resampling needs: per-family statistics (for
bootstrap intervals and paired tests, `hf_rrg.metrics.significance`) and, with ``skip_unavailable=True``, the
metrics that could not run here (no Java, a learned metric without its package or weights) with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bleu import bleu, bleu_statistics
from .cider import cider_d, cider_original, cider_statistics
from .clinical import Labeler, binarize_labels, clinical_efficacy_from_labels, clinical_labels
from .errors import EvaluationInputError, MetricUnavailableError
from .inputs import has_words
from .protocols import prepare_texts
from .rouge import rouge_l
from .statistics import BleuStatistics, FamilyStatistics, LabelStatistics, MeanStatistics, MeteorStatistics

LEARNED_METRICS = ("bertscore", "f1chexbert", "radgraph", "ratescore")
METRICS = ("bleu", "rouge_l", "cider_d", "cider", "meteor", "ce") + LEARNED_METRICS
DEFAULT_METRICS = ("bleu", "rouge_l", "cider_d", "meteor", "ce")


def check_references(references: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    """One non-empty list of reference strings with words per item; errors name the item.

    A reference with no words ("...") is refused like an empty one: a labeler reads it as "No Finding", so
    clinical metrics would score a normal prediction 1.0 against it.
    """
    checked = []
    for index, item in enumerate(references):
        refs = [item] if isinstance(item, str) else list(item)
        if not refs:
            raise EvaluationInputError(f"item {index} has no reference; every prediction needs one")
        for ref in refs:
            if not isinstance(ref, str) or not ref.strip():
                raise EvaluationInputError(
                    f"item {index} has an empty reference ({ref!r}); remove the item or supply its reference report"
                )
            if not has_words(ref):
                raise EvaluationInputError(
                    f"item {index} has a reference with no words ({ref!r:.60}); remove the item or supply its report"
                )
        checked.append(refs)
    return checked


@dataclass
class Evaluation:
    """Corpus scores, the metrics skipped (name -> reason) and, when asked for, per-family statistics."""

    scores: dict[str, float]
    skipped: dict[str, str] = field(default_factory=dict)
    statistics: list[FamilyStatistics] = field(default_factory=list)
    n_items: int = 0


@dataclass
class _Texts:
    """The strings each metric family scores."""

    nlg_preds: list[str]
    nlg_refs: list[list[str]]
    preds: list[str]  # protocol-cleaned (before PTB): clinical and learned metrics
    refs: list[list[str]]


def _family_bleu(texts: _Texts, keep: bool, **_: Any):
    scores = bleu(texts.nlg_preds, texts.nlg_refs).corpus
    return scores, BleuStatistics(*bleu_statistics(texts.nlg_preds, texts.nlg_refs)) if keep else None


def _family_rouge(texts: _Texts, keep: bool, **_: Any):
    result = rouge_l(texts.nlg_preds, texts.nlg_refs)
    return result.corpus, MeanStatistics(result.per_item)


def _family_cider(clipped: bool) -> Callable:
    def family(texts: _Texts, keep: bool, **_: Any):
        function = cider_d if clipped else cider_original
        scores = function(texts.nlg_preds, texts.nlg_refs).corpus
        return scores, cider_statistics(texts.nlg_preds, texts.nlg_refs, clipped=clipped) if keep else None

    return family


def _family_meteor(texts: _Texts, keep: bool, **_: Any):
    from .meteor import meteor

    lines: list[str] = []
    scores = meteor(texts.nlg_preds, texts.nlg_refs, statistics=lines).corpus
    return scores, MeteorStatistics(lines)


def _family_ce(texts: _Texts, keep: bool, labeler: Labeler | None = None, uncertain: int = 0, **_: Any):
    predicted, reference = clinical_labels(texts.preds, [item[0] for item in texts.refs], labeler)
    scores = clinical_efficacy_from_labels(predicted, reference, uncertain=uncertain).as_dict()
    statistics = LabelStatistics(binarize_labels(predicted, uncertain), binarize_labels(reference, uncertain))
    return scores, statistics


def _family_bertscore(texts: _Texts, keep: bool, options: Mapping[str, Any] | None = None, **_: Any):
    from .bertscore import bertscore

    result = bertscore(texts.preds, texts.refs, **(options or {}))
    return result.corpus, MeanStatistics(result.per_item)


def _family_f1chexbert(texts: _Texts, keep: bool, options: Mapping[str, Any] | None = None, **_: Any):
    from .chexbert import CheXbertLabeler, chexbert_statistics

    labeler = CheXbertLabeler(**(options or {}))
    statistics = chexbert_statistics(labeler.label_matrix(texts.preds),
                                     labeler.label_matrix([item[0] for item in texts.refs]))
    scores = {name: float(value[0]) for name, value in statistics.corpus(np.ones((1, statistics.n_rows))).items()}
    return scores, statistics


def _family_first_reference(module: str, function: str) -> Callable:
    def family(texts: _Texts, keep: bool, options: Mapping[str, Any] | None = None, **_: Any):
        import importlib

        score = getattr(importlib.import_module(f"hf_rrg.metrics.{module}"), function)
        result = score(texts.preds, [item[0] for item in texts.refs], **(options or {}))
        return result.corpus, MeanStatistics(result.per_item)

    return family


_FAMILIES: dict[str, Callable] = {
    "bleu": _family_bleu,
    "rouge_l": _family_rouge,
    "cider_d": _family_cider(clipped=True),
    "cider": _family_cider(clipped=False),
    "meteor": _family_meteor,
    "ce": _family_ce,
    "bertscore": _family_bertscore,
    "f1chexbert": _family_f1chexbert,
    "radgraph": _family_first_reference("radgraph", "radgraph_f1"),
    "ratescore": _family_first_reference("ratescore", "ratescore"),
}


def _prepare(
    predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], protocol: str, tokenizer: Any,
    max_seq_length: int | None, cleaner: str | None, ptb: bool,
) -> _Texts:
    if isinstance(predictions, str):
        raise TypeError("predictions must be a sequence of strings, not a single str")
    predictions = list(predictions)
    reference_lists = check_references(references)
    if len(predictions) != len(reference_lists):
        raise EvaluationInputError(f"got {len(predictions)} predictions but {len(reference_lists)} references")
    if not predictions:
        raise EvaluationInputError("nothing to evaluate: no predictions were given")
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
    return _Texts(nlg_preds, nlg_refs, preds, refs)


@dataclass(frozen=True)
class _Settings:
    """`evaluate_reports`' options (see there)."""

    protocol: str = "default"
    tokenizer: Any = None
    max_seq_length: int | None = None
    labeler: Labeler | None = None
    cleaner: str | None = None
    ptb: bool = False
    uncertain: int = 0
    learned: Mapping[str, Mapping[str, Any]] | None = None


def evaluate_detailed(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    skip_unavailable: bool = False,
    statistics: bool = False,
    **settings: Any,
) -> Evaluation:
    """`evaluate_reports`, returning an `Evaluation`: scores, skipped metrics and (``statistics=True``) the
    per-family statistics for `hf_rrg.metrics.significance`.

    `settings` are `evaluate_reports`' keyword arguments (protocol, tokenizer, max_seq_length, labeler, cleaner,
    ptb, uncertain, learned). With `skip_unavailable`, a metric that cannot run here (`MetricUnavailableError`: no Java, no package, no
    weights) is listed in ``skipped`` with the reason and every other metric is still computed.
    """
    return _evaluate(predictions, references, metrics, _Settings(**settings), skip_unavailable, statistics)


def _evaluate(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    metrics: Sequence[str],
    settings: _Settings,
    skip_unavailable: bool,
    statistics: bool,
) -> Evaluation:
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    texts = _prepare(predictions, references, settings.protocol, settings.tokenizer, settings.max_seq_length,
                     settings.cleaner, settings.ptb)
    result = Evaluation(scores={}, n_items=len(texts.preds))
    for name in metrics:
        try:
            scores, family = _FAMILIES[name](texts, statistics, labeler=settings.labeler, uncertain=settings.uncertain,
                                             options=(settings.learned or {}).get(name))
        except MetricUnavailableError as error:
            if not skip_unavailable:
                raise
            result.skipped[name] = str(error)
            continue
        result.scores.update(scores)
        if statistics and family is not None:
            result.statistics.append(family)
    return result


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
    learned: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, float]:
    """Score generated reports against references; returns a flat ``{score name: value}`` dict.

    `metrics` picks from ``bleu`` (BLEU-1..4), ``rouge_l``, ``cider_d``, ``cider`` (original CIDEr),
    ``meteor`` (Java), ``ce`` (clinical efficacy with `labeler`, default `hf_rrg.labeling.CheXpertLabeler()`,
    uncertain labels mapped to `uncertain`) and the learned metrics ``bertscore``, ``f1chexbert``,
    ``radgraph``, ``ratescore`` (options per metric in `learned`). `protocol` (``default``, ``r2gen``,
    ``chinese``), `tokenizer` (an `RRGTokenizer` or its directory), `max_seq_length` (``r2gen`` only), `cleaner`
    and `ptb` decide the scored strings (see `hf_rrg.metrics.protocols`). Empty predictions are scored;
    references that are empty or hold no words raise. CE and the learned metrics score the protocol's cleaned
    strings (before PTB tokenization); CE, F1-CheXbert, F1-RadGraph and RaTEScore use the first reference of
    each item, BERTScore all of them.
    """
    settings = _Settings(protocol, tokenizer, max_seq_length, labeler, cleaner, ptb, uncertain, learned)
    return _evaluate(predictions, references, metrics, settings, skip_unavailable=False, statistics=False).scores
