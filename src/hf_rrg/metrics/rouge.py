"""ROUGE-L exactly as pycocoevalcap 1.2 computes it (`Rouge().compute_score`).

Per item: tokens are ``text.split(" ")`` (single spaces; so an empty string is one empty token, as in
pycocoevalcap); for each reference, P = LCS / len(hypothesis) and R = LCS / len(reference); the item score is
F = (1 + beta^2) P R / (R + beta^2 P) with P and R the *separate* maxima over the references (0 when either
is 0), beta = 1.2. The corpus score is the mean of the item scores.

The longest common subsequence uses the bit-parallel algorithm of Allison & Dix (1986) / Crochemore et al.
(2001) on Python integers: one pass over the hypothesis with a few word operations per token, for any length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .inputs import as_reference_lists
from .result import NLGScore


def lcs_length(first: Sequence[str], second: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences (bit-parallel)."""
    if len(second) > len(first):
        first, second = second, first
    if not second:
        return 0
    masks: dict[str, int] = {}
    for position, token in enumerate(second):
        masks[token] = masks.get(token, 0) | (1 << position)
    all_ones = (1 << len(second)) - 1
    row = all_ones  # bit j == 0  <=>  the LCS of the prefix grew at second[j]
    get = masks.get
    for token in first:
        match = get(token)
        if match:
            common = row & match
            row = ((row + common) | (row - common)) & all_ones
    return len(second) - row.bit_count()


def rouge_l(
    predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], beta: float = 1.2
) -> NLGScore:
    """Corpus ROUGE-L (key ``rouge_l``: the mean item F-score) and per-item scores, as pycocoevalcap's `Rouge`."""
    predictions, reference_lists = as_reference_lists(predictions, references)
    if not predictions:
        raise ValueError("ROUGE-L needs at least one prediction")
    precision = np.empty(len(predictions))
    recall = np.empty(len(predictions))
    for index, (prediction, refs) in enumerate(zip(predictions, reference_lists)):
        hypothesis = prediction.split(" ")
        best_precision = best_recall = 0.0
        for reference in refs:
            tokens = reference.split(" ")
            lcs = lcs_length(tokens, hypothesis)
            best_precision = max(best_precision, lcs / float(len(hypothesis)))
            best_recall = max(best_recall, lcs / float(len(tokens)))
        precision[index], recall[index] = best_precision, best_recall
    beta_squared = beta**2
    positive = (precision != 0) & (recall != 0)
    scores = np.zeros(len(predictions))
    p, r = precision[positive], recall[positive]
    scores[positive] = ((1 + beta_squared) * p * r) / (r + beta_squared * p)
    return NLGScore(corpus={"rouge_l": float(np.mean(scores))}, per_item={"rouge_l": scores})
