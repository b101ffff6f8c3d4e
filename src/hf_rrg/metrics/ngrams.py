"""Vectorised n-gram counting: every n-gram (orders 1..n) of a corpus as an integer id, with counts per sentence.

BLEU and CIDEr both need, per sentence, the count of each of its n-grams. Counting with dictionaries of
tuples is what makes the reference implementations slow; here tokens become integer ids, an order-k n-gram id
is the id of the pair (id of its first k-1 tokens, id of its last token), and all counting is `numpy.unique`
over int64 keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def token_ids(sentences: list[list[str]], vocabulary: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat int64 token ids of all sentences (growing `vocabulary`) and the token count per sentence."""
    setdefault = vocabulary.setdefault
    flat = [setdefault(word, len(vocabulary)) for words in sentences for word in words]
    lengths = np.fromiter((len(words) for words in sentences), dtype=np.int64, count=len(sentences))
    return np.asarray(flat, dtype=np.int64), lengths


@dataclass(frozen=True)
class NgramCounts:
    """Distinct (sentence, n-gram) pairs of a corpus with their term frequency.

    `sentence`, `order` (0 for unigrams .. n-1) and `gram` (an id unique across orders and across every
    corpus encoded by the same `NgramEncoder`) are parallel arrays sorted by (sentence, gram); `count` is
    how often the n-gram occurs in the sentence; `lengths` is each sentence's token count.
    """

    sentence: np.ndarray
    order: np.ndarray
    gram: np.ndarray
    count: np.ndarray
    lengths: np.ndarray


class NgramEncoder:
    """Assigns shared n-gram ids to several corpora (e.g. hypotheses and references) so they can be joined."""

    def __init__(self, n: int = 4) -> None:
        if n < 1:
            raise ValueError(f"n-gram order must be at least 1, got {n}")
        self.n = n
        self.vocabulary: dict[str, int] = {}

    def encode(self, corpora: list[list[list[str]]]) -> list[NgramCounts]:
        """Count the n-grams of each corpus (a list of token lists); ids are shared across the corpora."""
        encoded = [token_ids(sentences, self.vocabulary) for sentences in corpora]
        vocab_size = max(len(self.vocabulary), 1)
        tokens = np.concatenate([ids for ids, _ in encoded]) if encoded else np.zeros(0, np.int64)
        lengths = [lens for _, lens in encoded]
        all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        n_sentences = len(all_lengths)
        sentence_of_token = np.repeat(np.arange(n_sentences, dtype=np.int64), all_lengths)
        ends = np.cumsum(all_lengths)
        tokens_left = ends[sentence_of_token] - np.arange(len(tokens), dtype=np.int64)  # incl. this token

        sentences, grams = [], []
        previous = tokens  # id of the order-k n-gram starting at each position (valid where tokens_left >= k)
        offset = 0
        order_starts: list[int] = []
        for k in range(1, self.n + 1):
            valid = tokens_left >= k
            if k == 1:
                ids = tokens
            else:
                keys = np.full(len(tokens), -1, dtype=np.int64)
                shifted = np.empty_like(tokens)
                shifted[: len(tokens) - (k - 1)] = tokens[k - 1 :]
                keys[valid] = previous[valid] * vocab_size + shifted[valid]
                _, inverse = np.unique(keys[valid], return_inverse=True)
                ids = np.full(len(tokens), -1, dtype=np.int64)
                ids[valid] = inverse
            positions = np.flatnonzero(valid)
            order_starts.append(offset)
            sentences.append(sentence_of_token[positions])
            grams.append(ids[positions] + offset)
            offset += int(ids[positions].max()) + 1 if len(positions) else 0
            previous = ids
        sentence = np.concatenate(sentences)
        gram = np.concatenate(grams)
        n_grams = max(offset, 1)
        order_starts.append(offset)
        unique_keys, count = sorted_unique_counts(sentence * n_grams + gram)
        sentence, gram = unique_keys // n_grams, unique_keys % n_grams
        order = np.searchsorted(np.asarray(order_starts), gram, side="right") - 1

        results = []
        start = 0
        bounds = np.searchsorted(sentence, np.cumsum([0] + [len(lens) for lens in lengths]))
        for index, lens in enumerate(lengths):
            lo, hi = bounds[index], bounds[index + 1]
            results.append(
                NgramCounts(sentence[lo:hi] - start, order[lo:hi], gram[lo:hi], count[lo:hi], lens)
            )
            start += len(lens)
        return results


def group_starts(group_sizes: np.ndarray) -> np.ndarray:
    """Start offsets of consecutive groups of the given sizes."""
    return np.concatenate([[0], np.cumsum(group_sizes)[:-1]]).astype(np.int64)


def lookup(sorted_keys: np.ndarray, values: np.ndarray, queries: np.ndarray, missing: float = 0) -> np.ndarray:
    """``values[i]`` where ``sorted_keys[i] == query`` for each query, `missing` where the key is absent."""
    if len(sorted_keys) == 0:
        return np.full(len(queries), missing, dtype=np.result_type(values.dtype, type(missing)))
    where = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
    return np.where(sorted_keys[where] == queries, values[where], missing)


def sorted_unique_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of an int64 array and how often each occurs (sort-based; no hashing)."""
    keys = np.sort(keys)
    if len(keys) == 0:
        return keys, np.zeros(0, dtype=np.int64)
    boundary = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate([[0], boundary])
    counts = np.diff(np.concatenate([starts, [len(keys)]]))
    return keys[starts], counts
