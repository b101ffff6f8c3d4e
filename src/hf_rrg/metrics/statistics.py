"""Per-study statistics of each metric family, from which the corpus score of any weighted set of studies follows.

A bootstrap resample, a permutation of two systems' outputs or the full test set is a weight vector over the
studies (how often each study is in the set). Every family keeps, once, the per-study numbers its corpus score
is built from, and `corpus(weights)` returns the corpus score of each weight row, *recomputed at corpus level*:

- BLEU: clipped matches, guesses and the two lengths per study; the weighted sums go through the BLEU formula
  (brevity penalty and geometric mean on the resample's totals, as pycocoevalcap's corpus BLEU).
- CIDEr-D / CIDEr: the document frequencies are recomputed for every weight row (a study drawn twice counts
  twice, N is the resample's size), exactly what pycocoevalcap computes on the resampled list. Because every
  tf-idf term is tf * idf(g) with idf(g) >= 0, each similarity numerator and squared norm is linear in
  idf(g)^2: per resample it is one sparse matrix product with the vector of idf^2, never a re-count.
- Label metrics (clinical efficacy, F1-CheXbert): TP/FP/FN per study and observation; micro, macro and
  example-based P/R/F1 from the weighted sums.
- Mean metrics (ROUGE-L, BERTScore, F1-RadGraph, RaTEScore): the weighted mean of the per-study scores.
- METEOR: the jar's per-study sufficient statistics, summed and scored with the jar's formula (tested equal to
  the jar's own aggregate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

_TINY, _SMALL = 1e-15, 1e-9  # pycocoevalcap's BLEU constants (see bleu.py)


class FamilyStatistics(Protocol):
    """The statistics of one metric family over `n_rows` studies."""

    names: tuple[str, ...]
    n_rows: int

    def corpus(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Corpus score of each row of `weights` ``(B, n_rows)``, as ``{name: (B,) array}``."""
        ...


def _check_weights(weights: np.ndarray, n_rows: int) -> np.ndarray:
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if weights.shape[1] != n_rows:
        raise ValueError(f"weights cover {weights.shape[1]} studies; these statistics hold {n_rows}")
    return weights


@dataclass
class MeanStatistics:
    """Scores whose corpus value is the mean of per-study values (ROUGE-L and the learned metrics)."""

    per_item: Mapping[str, np.ndarray]
    names: tuple[str, ...] = field(init=False)
    n_rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.names = tuple(self.per_item)
        self.n_rows = len(next(iter(self.per_item.values()))) if self.per_item else 0

    def corpus(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        weights = _check_weights(weights, self.n_rows)
        total = weights.sum(axis=1)
        return {name: weights @ np.asarray(values, dtype=np.float64) / total for name, values in self.per_item.items()}


@dataclass
class BleuStatistics:
    """Clipped matches and guesses per order ``(N, n)``, hypothesis and closest reference length ``(N,)``."""

    matches: np.ndarray
    guesses: np.ndarray
    hyp_len: np.ndarray
    ref_len: np.ndarray
    names: tuple[str, ...] = field(init=False)
    n_rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.names = tuple(f"bleu_{k + 1}" for k in range(self.matches.shape[1]))
        self.n_rows = len(self.hyp_len)

    def corpus(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        weights = _check_weights(weights, self.n_rows)
        matches = weights @ self.matches.astype(np.float64)
        guesses = weights @ self.guesses.astype(np.float64)
        ratio = (weights @ self.hyp_len.astype(np.float64) + _TINY) / (weights @ self.ref_len.astype(np.float64) + _SMALL)
        penalty = np.where(ratio < 1, np.exp(1 - 1 / np.where(ratio < 1, ratio, 1.0)), 1.0)
        product = np.ones(len(weights))
        scores = {}
        for k, name in enumerate(self.names):
            product = product * ((matches[:, k] + _TINY) / (guesses[:, k] + _SMALL))
            scores[name] = product ** (1.0 / (k + 1)) * penalty
        return scores


def sparse_matrix(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]):
    """A float64 CSR matrix (torch) summing duplicate entries."""
    import torch

    indices = torch.from_numpy(np.stack([rows, cols]).astype(np.int64))
    matrix = torch.sparse_coo_tensor(indices, torch.from_numpy(values.astype(np.float64)), shape).coalesce()
    return matrix.to_sparse_csr()


@dataclass
class IdfWeightedSums:
    """Row sums ``sum_g value(row, g) * idf(g)^2`` for any weighting of the studies, split by document frequency.

    Document frequencies count *reference groups* (studies with the same references: one per study, or a study
    and its copy when two systems are compared). On the full set an n-gram occurs in 0, 1 or more groups. With
    0, its idf is log N in every weighting (`constant`: the summed values per row). With 1 (most 3- and
    4-grams), its document frequency is the weight of that group, so the values are summed per (row, group)
    once (`by_group`). Only the others (`shared`, rows x shared grams) need the weighting's document frequencies.
    """

    constant: np.ndarray
    by_group: object
    shared: object

    @classmethod
    def build(cls, rows: np.ndarray, grams: np.ndarray, values: np.ndarray, n_rows: int,
              owner: np.ndarray, shared_index: np.ndarray, n_groups: int) -> IdfWeightedSums:
        """`owner[g]`: the one group of gram g (-1 when 0 or several); `shared_index[g]`: its column or -1."""
        none = (owner[grams] < 0) & (shared_index[grams] < 0)
        one = owner[grams] >= 0
        many = shared_index[grams] >= 0
        constant = np.bincount(rows[none], weights=values[none], minlength=n_rows)
        by_group = sparse_matrix(rows[one], owner[grams[one]], values[one], (n_rows, n_groups))
        n_shared = int(shared_index.max(initial=-1)) + 1
        shared = sparse_matrix(rows[many], shared_index[grams[many]], values[many], (n_rows, max(n_shared, 1)))
        return cls(constant, by_group, shared)

    def evaluate(self, log_size_square, group_idf_square, shared_idf_square):
        """(rows, B) sums for a block of B weightings (torch tensors)."""
        import torch

        total = torch.sparse.mm(self.by_group, group_idf_square) + torch.sparse.mm(self.shared, shared_idf_square)
        return total + torch.from_numpy(self.constant)[:, None] * log_size_square[None, :]


@dataclass
class CiderStatistics:
    """CIDEr-D (``clipped``) or original CIDEr with document frequencies recomputed for every weight row.

    Built by `hf_rrg.metrics.cider.cider_statistics`. `group_of_row` maps each study to its reference group;
    `shared_has` (shared gram x group) holds 1 where a group's references contain an n-gram found in several
    groups; `numerator` (reference-order rows: min(h, r) * r, or h * r), `hyp_square` (study-order rows: h^2)
    and `ref_square` (reference-order rows: r^2) are `IdfWeightedSums`. Per-study scores depend on a weighting
    only through its group weights, so they are computed once per distinct group weighting (a randomization
    trial keeps every group's weight at 1: the document frequencies of the full set).
    """

    name: str
    n: int
    group_of_row: np.ndarray
    shared_has: object
    numerator: IdfWeightedSums
    hyp_square: IdfWeightedSums
    ref_square: IdfWeightedSums
    item_of_ref: np.ndarray
    penalty: np.ndarray
    ref_counts: np.ndarray
    scale: float
    names: tuple[str, ...] = field(init=False)
    n_rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.names = (self.name,)
        self.n_rows = len(self.ref_counts)
        self.n_groups = int(self.group_of_row.max(initial=-1)) + 1

    def corpus(self, weights: np.ndarray, chunk_elements: int = 8_000_000) -> dict[str, np.ndarray]:
        import torch

        weights = _check_weights(weights, self.n_rows)
        offsets = (np.arange(len(weights)) * self.n_groups)[:, None]
        group_weights = np.bincount((self.group_of_row[None, :] + offsets).ravel(), weights=weights.ravel(),
                                    minlength=len(weights) * self.n_groups).reshape(len(weights), self.n_groups)
        distinct, which = np.unique(group_weights, axis=0, return_inverse=True)
        width = max(self.shared_has.shape[0], self.n_rows, len(self.item_of_ref) * self.n, 1)
        chunk = max(1, min(len(distinct), chunk_elements // width))
        per_item = np.empty((self.n_rows, len(distinct)))
        for start in range(0, len(distinct), chunk):
            block = torch.from_numpy(np.ascontiguousarray(distinct[start : start + chunk].T))
            per_item[:, start : start + chunk] = self._per_item(block)
        scores = np.einsum("bi,ib->b", weights, per_item[:, which.ravel()]) / weights.sum(axis=1)
        return {self.name: scores}

    def _per_item(self, group_weights):
        """Per-study scores ``(n_rows, B)`` under the columns of `group_weights` ``(n_groups, B)`` (torch)."""
        import torch

        size = group_weights.sum(dim=0)  # N of each weighting
        log_size = torch.log(size)
        group_idf = log_size[None, :] - torch.log(torch.clamp(group_weights, min=1.0))
        shared_df = torch.sparse.mm(self.shared_has, group_weights)
        shared_idf = log_size[None, :] - torch.log(torch.clamp(shared_df, min=1.0))
        squares = (log_size * log_size, group_idf * group_idf, shared_idf * shared_idf)
        n_refs = len(self.item_of_ref)
        numerator = self.numerator.evaluate(*squares).reshape(n_refs, self.n, -1)
        hyp_norm = torch.sqrt(self.hyp_square.evaluate(*squares)).reshape(self.n_rows, self.n, -1)
        ref_norm = torch.sqrt(self.ref_square.evaluate(*squares)).reshape(n_refs, self.n, -1)
        norms = hyp_norm[torch.from_numpy(self.item_of_ref)] * ref_norm
        similarity = torch.where(norms != 0, numerator / torch.where(norms != 0, norms, 1.0), numerator)
        per_ref = similarity.sum(dim=1) * torch.from_numpy(self.penalty)[:, None]  # sum over orders, x penalty
        per_item = torch.zeros(self.n_rows, per_ref.shape[1], dtype=per_ref.dtype)
        per_item.index_add_(0, torch.from_numpy(self.item_of_ref), per_ref)
        return (per_item / self.n / torch.from_numpy(self.ref_counts.astype(np.float64))[:, None] * self.scale).numpy()


def _ratio(numerator: np.ndarray, denominator: np.ndarray, zero_division: float) -> np.ndarray:
    out = np.full(np.broadcast(numerator, denominator).shape, float(zero_division))
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


@dataclass
class LabelStatistics:
    """Micro, macro and example-based P/R/F1 of binary label matrices ``(N, C)`` (clinical efficacy, CheXbert).

    `prefix` names the scores (``ce`` gives ``ce_micro_f1`` ...); `groups` maps a suffix to the columns it
    keeps (``{"": all}`` for CE; ``{"_14": all, "_5": top five}`` for F1-CheXbert); `kinds` picks the averages.
    """

    predicted: np.ndarray
    reference: np.ndarray
    prefix: str = "ce"
    groups: Mapping[str, Sequence[int]] | None = None
    kinds: tuple[str, ...] = ("micro", "macro", "example")
    zero_division: float = 0.0
    names: tuple[str, ...] = field(init=False)
    n_rows: int = field(init=False)

    def __post_init__(self) -> None:
        predicted = np.asarray(self.predicted).astype(bool)
        reference = np.asarray(self.reference).astype(bool)
        if self.groups is None:
            self.groups = {"": list(range(predicted.shape[1]))}
        self._tp = (predicted & reference).astype(np.float64)
        self._fp = (predicted & ~reference).astype(np.float64)
        self._fn = (~predicted & reference).astype(np.float64)
        self.n_rows = predicted.shape[0]
        self.names = tuple(
            f"{self.prefix}_{kind}_{measure}{suffix}"
            for suffix in self.groups
            for kind in self.kinds
            for measure in ("precision", "recall", "f1")
        )

    def corpus(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        weights = _check_weights(weights, self.n_rows)
        scores: dict[str, np.ndarray] = {}
        z = self.zero_division
        for suffix, columns in self.groups.items():
            tp, fp, fn = (matrix[:, list(columns)] for matrix in (self._tp, self._fp, self._fn))
            for kind in self.kinds:
                if kind == "micro":
                    t, p, n = (weights @ m.sum(axis=1) for m in (tp, fp, fn))
                    values = (_ratio(t, t + p, z), _ratio(t, t + n, z), _ratio(2 * t, 2 * t + p + n, z))
                elif kind == "macro":
                    t, p, n = (weights @ m for m in (tp, fp, fn))  # (B, C)
                    values = tuple(v.mean(axis=1) for v in
                                   (_ratio(t, t + p, z), _ratio(t, t + n, z), _ratio(2 * t, 2 * t + p + n, z)))
                else:  # example-based: per-study ratios, weighted mean
                    t, p, n = tp.sum(axis=1), fp.sum(axis=1), fn.sum(axis=1)
                    total = weights.sum(axis=1)
                    values = tuple(weights @ v / total for v in
                                   (_ratio(t, t + p, z), _ratio(t, t + n, z), _ratio(2 * t, 2 * t + p + n, z)))
                for measure, value in zip(("precision", "recall", "f1"), values):
                    scores[f"{self.prefix}_{kind}_{measure}{suffix}"] = value
        return scores


@dataclass
class MeteorStatistics:
    """The METEOR jar's sufficient statistics per study (`hf_rrg.metrics.meteor.parse_statistics`); a weighting's
    corpus METEOR applies the jar's formula to the weighted sums (`meteor_from_statistics`), no JVM needed."""

    lines: list[str]
    names: tuple[str, ...] = ("meteor",)
    n_rows: int = field(init=False)

    def __post_init__(self) -> None:
        from .meteor import parse_statistics

        self._statistics = parse_statistics(self.lines)
        self.n_rows = len(self.lines)

    def corpus(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        from .meteor import meteor_from_statistics

        weights = _check_weights(weights, self.n_rows)
        return {"meteor": meteor_from_statistics(weights @ self._statistics)}


def point_estimates(statistics: Sequence[FamilyStatistics], n_rows: int) -> dict[str, float]:
    """Corpus scores of every family on all `n_rows` studies (weight 1 each)."""
    ones = np.ones((1, n_rows))
    return {name: float(value[0]) for family in statistics for name, value in family.corpus(ones).items()}


__all__ = [
    "BleuStatistics",
    "CiderStatistics",
    "FamilyStatistics",
    "LabelStatistics",
    "MeanStatistics",
    "MeteorStatistics",
    "point_estimates",
]
