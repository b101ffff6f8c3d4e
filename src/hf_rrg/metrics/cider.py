"""CIDEr-D exactly as pycocoevalcap 1.2's `Cider` computes it, and the original CIDEr of the paper.

Both use n-grams of orders 1..4 from ``str.split()`` tokens and tf-idf vectors per order: the weight of an
n-gram in a sentence is ``tf * (log(N) - log(max(1, df)))`` where N is the number of evaluated items and df the
number of items whose references contain the n-gram (so document frequencies come from the evaluated set's
references, never from a fixed corpus).

`cider_d` (Vedantam et al., 2015, the "-D" variant, as coded in pycocoevalcap):
    per order n and reference j: sim_n = sum_g min(w_hyp(g), w_ref(g)) * w_ref(g) / (|w_hyp| |w_ref|)
    (clipped; left undivided when a norm is 0), times the Gaussian length penalty exp(-delta^2 / (2 sigma^2))
    with sigma = 6 and delta = (#bigrams of the hypothesis) - (#bigrams of the reference): pycocoevalcap
    counts a sentence's length as its number of bigram occurrences, i.e. max(0, words - 1);
    item score = 10 * mean_n(sum_j sim_n) / (#references); corpus score = mean of the item scores.
`cider_original` (Vedantam et al., 2015, eqs. 2-4): the plain cosine of the tf-idf vectors (no clipping,
    no length penalty), averaged over references and orders, and *not* multiplied by 10.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .inputs import as_reference_lists
from .ngrams import NgramCounts, NgramEncoder, lookup, sorted_unique_counts
from .result import NLGScore
from .statistics import CiderStatistics, IdfWeightedSums, sparse_matrix


def _encode(
    predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], n: int
) -> tuple[NgramCounts, NgramCounts, np.ndarray, np.ndarray, int]:
    """n-gram counts of hypotheses and references, the item of each reference, references per item, #grams."""
    predictions, reference_lists = as_reference_lists(predictions, references)
    n_items = len(predictions)
    if n_items == 0:
        raise ValueError("CIDEr needs at least one prediction")
    ref_counts = np.fromiter((len(refs) for refs in reference_lists), dtype=np.int64, count=n_items)
    hyp_tokens = [text.split() for text in predictions]
    ref_tokens = [text.split() for refs in reference_lists for text in refs]
    hyp, ref = NgramEncoder(n).encode([hyp_tokens, ref_tokens])
    item_of_ref = np.repeat(np.arange(n_items, dtype=np.int64), ref_counts)
    n_grams = int(max(hyp.gram.max(initial=0), ref.gram.max(initial=0))) + 1
    return hyp, ref, item_of_ref, ref_counts, n_grams


def _length_penalty(hyp: NgramCounts, ref: NgramCounts, item_of_ref: np.ndarray, sigma: float) -> np.ndarray:
    """CIDEr-D's Gaussian penalty per reference; lengths are bigram counts, as pycocoevalcap counts them."""
    hyp_length = np.maximum(hyp.lengths - 1, 0)
    ref_length = np.maximum(ref.lengths - 1, 0)
    delta = (hyp_length[item_of_ref] - ref_length).astype(np.float64)
    return np.e ** (-(delta**2) / (2 * sigma**2))


def _cider(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    n: int,
    sigma: float,
    clipped: bool,
) -> np.ndarray:
    """Per-item CIDEr-D (``clipped=True``, with penalty and x10) or original CIDEr scores."""
    hyp, ref, item_of_ref, ref_counts, n_grams = _encode(predictions, references, n)
    n_items = len(ref_counts)
    n_refs = len(item_of_ref)

    # Document frequency: the number of items whose references contain each n-gram.
    item_gram, _ = sorted_unique_counts(item_of_ref[ref.sentence] * n_grams + ref.gram)
    document_frequency = np.bincount(item_gram % n_grams, minlength=n_grams).astype(np.float64)
    log_n = np.log(float(n_items))
    idf = log_n - np.log(np.maximum(1.0, document_frequency))

    hyp_weight = hyp.count.astype(np.float64) * idf[hyp.gram]
    ref_weight = ref.count.astype(np.float64) * idf[ref.gram]
    hyp_norm = np.sqrt(
        np.bincount(hyp.sentence * n + hyp.order, weights=hyp_weight**2, minlength=n_items * n)
    ).reshape(n_items, n)
    ref_norm = np.sqrt(
        np.bincount(ref.sentence * n + ref.order, weights=ref_weight**2, minlength=n_refs * n)
    ).reshape(n_refs, n)

    # Join each reference n-gram with the same n-gram in its item's hypothesis.
    hyp_key = hyp.sentence * n_grams + hyp.gram  # sorted: NgramCounts are sorted by (sentence, gram)
    matched = lookup(hyp_key, hyp_weight, item_of_ref[ref.sentence] * n_grams + ref.gram, missing=0.0)
    product = np.minimum(matched, ref_weight) * ref_weight if clipped else matched * ref_weight
    similarity = np.bincount(ref.sentence * n + ref.order, weights=product, minlength=n_refs * n)
    similarity = similarity.reshape(n_refs, n)
    norms = hyp_norm[item_of_ref] * ref_norm
    nonzero = norms != 0
    similarity[nonzero] /= norms[nonzero]
    if clipped:
        similarity *= _length_penalty(hyp, ref, item_of_ref, sigma)[:, None]

    per_item = np.zeros((n_items, n))
    np.add.at(per_item, item_of_ref, similarity)
    scores = per_item.mean(axis=1) / ref_counts
    return scores * 10.0 if clipped else scores


def cider_d(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    n: int = 4,
    sigma: float = 6.0,
) -> NLGScore:
    """Corpus CIDEr-D (key ``cider_d``) and per-item scores, equal to pycocoevalcap's `Cider().compute_score`."""
    scores = _cider(predictions, references, n, sigma, clipped=True)
    return NLGScore(corpus={"cider_d": float(np.mean(scores))}, per_item={"cider_d": scores})


def cider_original(
    predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], n: int = 4
) -> NLGScore:
    """Corpus original CIDEr (key ``cider``; no clipping, no length penalty, no x10) and per-item scores."""
    scores = _cider(predictions, references, n, 0.0, clipped=False)
    return NLGScore(corpus={"cider": float(np.mean(scores))}, per_item={"cider": scores})


def cider_statistics(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    n: int = 4,
    sigma: float = 6.0,
    clipped: bool = True,
) -> CiderStatistics:
    """Per-study statistics of CIDEr-D (``clipped``) or original CIDEr, for corpus scores of resampled sets.

    Document frequencies are *not* fixed here: `CiderStatistics.corpus` recomputes them for every weight row.
    """
    predictions, reference_lists = as_reference_lists(predictions, references)
    hyp, ref, item_of_ref, ref_counts, n_grams = _encode(predictions, reference_lists, n)
    n_items, n_refs = len(ref_counts), len(item_of_ref)
    # Studies with the same references form one group (a study and its copy when two systems are compared).
    groups: dict[tuple[str, ...], int] = {}
    group_of_row = np.array([groups.setdefault(tuple(refs), len(groups)) for refs in reference_lists], dtype=np.int64)
    n_groups = len(groups)
    group_gram, _ = sorted_unique_counts(group_of_row[item_of_ref[ref.sentence]] * n_grams + ref.gram)
    gram_of_pair, group_of_pair = group_gram % n_grams, group_gram // n_grams
    document_frequency = np.bincount(gram_of_pair, minlength=n_grams)
    owner = np.full(n_grams, -1, dtype=np.int64)  # the one group whose references hold the gram
    single = document_frequency[gram_of_pair] == 1
    owner[gram_of_pair[single]] = group_of_pair[single]
    shared_grams = np.flatnonzero(document_frequency > 1)
    shared_index = np.full(n_grams, -1, dtype=np.int64)
    shared_index[shared_grams] = np.arange(len(shared_grams))
    shared_has = sparse_matrix(shared_index[gram_of_pair[~single]], group_of_pair[~single],
                               np.ones(int((~single).sum())), (max(len(shared_grams), 1), n_groups))

    def sums(rows: np.ndarray, grams: np.ndarray, values: np.ndarray, n_rows: int) -> IdfWeightedSums:
        return IdfWeightedSums.build(rows, grams, values.astype(np.float64), n_rows, owner, shared_index, n_groups)

    hyp_key = hyp.sentence * n_grams + hyp.gram
    matched = lookup(hyp_key, hyp.count, item_of_ref[ref.sentence] * n_grams + ref.gram, missing=0)
    product = np.minimum(matched, ref.count) * ref.count if clipped else matched * ref.count
    keep = product != 0
    penalty = _length_penalty(hyp, ref, item_of_ref, sigma) if clipped else np.ones(n_refs)
    return CiderStatistics(
        name="cider_d" if clipped else "cider",
        n=n,
        group_of_row=group_of_row,
        shared_has=shared_has,
        numerator=sums((ref.sentence * n + ref.order)[keep], ref.gram[keep], product[keep], n_refs * n),
        hyp_square=sums(hyp.sentence * n + hyp.order, hyp.gram, hyp.count**2, n_items * n),
        ref_square=sums(ref.sentence * n + ref.order, ref.gram, ref.count**2, n_refs * n),
        item_of_ref=item_of_ref,
        penalty=penalty,
        ref_counts=ref_counts,
        scale=10.0 if clipped else 1.0,
    )
