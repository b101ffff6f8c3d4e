"""BLEU-1..4 exactly as pycocoevalcap 1.2 computes it (`Bleu().compute_score`, option ``closest``).

Definition (Papineni et al., 2002, with the coco-caption conventions):
- tokens are ``str.split()`` (any whitespace);
- clipped n-gram matches count each hypothesis n-gram at most as often as it occurs in the reference that
  has it most often;
- the effective reference length of an item is the reference length closest to the hypothesis length (the
  shorter one on a tie);
- BLEU-n = (prod_{k<=n} (matches_k + 1e-15) / (guesses_k + 1e-9)) ** (1/n) times the brevity penalty
  exp(1 - r/c) when c < r, where c = (hyp_len + 1e-15) and r = (ref_len + 1e-9): the tiny constants are
  pycocoevalcap's and make an empty hypothesis score ~0 instead of dividing by zero.
The corpus score sums matches, guesses and lengths over all items first; the per-item scores apply the same
formula to each item alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .inputs import as_reference_lists
from .ngrams import NgramEncoder, group_starts, lookup
from .result import NLGScore

_TINY = 1e-15  # added to match counts (pycocoevalcap's `tiny`)
_SMALL = 1e-9  # added to guess counts and lengths (pycocoevalcap's `small`)


def bleu_statistics(
    predictions: list[str], references: list[list[str]], max_n: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per item: clipped matches and guesses per order (both ``(N, max_n)``), hypothesis length, closest ref length."""
    n_items = len(predictions)
    ref_counts = np.fromiter((len(refs) for refs in references), dtype=np.int64, count=n_items)
    hyp_tokens = [text.split() for text in predictions]
    ref_tokens = [text.split() for refs in references for text in refs]
    hyp, ref = NgramEncoder(max_n).encode([hyp_tokens, ref_tokens])
    item_of_ref = np.repeat(np.arange(n_items, dtype=np.int64), ref_counts)
    n_grams = int(max(hyp.gram.max(initial=0), ref.gram.max(initial=0))) + 1

    # Largest count of each n-gram over an item's references: sort (key, count) pairs, keep each key's last.
    unique_ref_key, max_ref_count = _max_count_per_key(item_of_ref[ref.sentence] * n_grams + ref.gram, ref.count)

    # Clip each hypothesis n-gram count by it.
    hyp_key = hyp.sentence * n_grams + hyp.gram
    clipped = np.minimum(hyp.count, lookup(unique_ref_key, max_ref_count, hyp_key, missing=0))
    matches = np.bincount(hyp.sentence * max_n + hyp.order, weights=clipped, minlength=n_items * max_n)
    matches = matches.reshape(n_items, max_n).astype(np.int64)

    hyp_len = hyp.lengths
    guesses = np.maximum(0, hyp_len[:, None] - np.arange(max_n)[None, :])

    # Closest reference length: min over refs of (|ref_len - hyp_len|, ref_len).
    ref_len = ref.lengths
    distance = np.abs(ref_len - hyp_len[item_of_ref])
    composite = distance * (int(ref_len.max(initial=0)) + 1) + ref_len
    best = np.minimum.reduceat(composite, group_starts(ref_counts)) if n_items else composite
    closest = best % (int(ref_len.max(initial=0)) + 1)
    return matches, guesses, hyp_len, closest


def _max_count_per_key(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (sorted) and the largest count seen with each."""
    if len(keys) == 0:
        return keys, counts
    base = int(counts.max()) + 1
    if int(keys.max()) < (2**62) // base:  # one int64 sort of key * base + count
        combined = np.sort(keys * base + counts)
        keys, counts = combined // base, combined % base
    else:
        order = np.lexsort((counts, keys))
        keys, counts = keys[order], counts[order]
    last = np.append(np.flatnonzero(keys[1:] != keys[:-1]), len(keys) - 1)
    return keys[last], counts[last]


def _bleu_from_statistics(
    matches: Sequence[float], guesses: Sequence[float], hyp_len: float, ref_len: float, max_n: int
) -> list[float]:
    scores = []
    product = 1.0
    for k in range(max_n):
        product *= (float(matches[k]) + _TINY) / (float(guesses[k]) + _SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (hyp_len + _TINY) / (ref_len + _SMALL)
    if ratio < 1:
        scores = [score * math.exp(1 - 1 / ratio) for score in scores]
    return scores


def bleu(
    predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], max_n: int = 4
) -> NLGScore:
    """Corpus BLEU-1..`max_n` (keys ``bleu_1`` ...) and per-item BLEU, as pycocoevalcap's `Bleu(max_n)`.

    `references` holds one string or a list of strings per prediction.
    """
    predictions, reference_lists = as_reference_lists(predictions, references)
    names = [f"bleu_{k + 1}" for k in range(max_n)]
    if not predictions:
        raise ValueError("BLEU needs at least one prediction")
    matches, guesses, hyp_len, ref_len = bleu_statistics(predictions, reference_lists, max_n)

    # Per item, vectorised in the same operation order as the scalar formula.
    product = np.ones(len(predictions))
    per_item = np.empty((len(predictions), max_n))
    for k in range(max_n):
        product = product * ((matches[:, k].astype(np.float64) + _TINY) / (guesses[:, k].astype(np.float64) + _SMALL))
        per_item[:, k] = product ** (1.0 / (k + 1))
    ratio = (hyp_len.astype(np.float64) + _TINY) / (ref_len.astype(np.float64) + _SMALL)
    short = ratio < 1
    per_item[short] *= np.exp(1 - 1 / ratio[short])[:, None]

    corpus = _bleu_from_statistics(
        [int(v) for v in matches.sum(axis=0)],
        [int(v) for v in guesses.sum(axis=0)],
        int(hyp_len.sum()),
        int(ref_len.sum()),
        max_n,
    )
    return NLGScore(
        corpus=dict(zip(names, corpus)),
        per_item={name: per_item[:, k].copy() for k, name in enumerate(names)},
    )
