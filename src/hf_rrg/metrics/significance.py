"""Uncertainty of corpus scores and significance of the difference between two systems.

- `bootstrap_intervals`: the percentile bootstrap (Efron & Tibshirani, 1993, ch. 13): draw N studies with
  replacement from the N test studies, `resamples` times (seeded), recompute every *corpus* score on each
  resample from the per-study statistics (`hf_rrg.metrics.statistics`), and report the (1-level)/2 and
  (1+level)/2 quantiles (numpy's linear interpolation) with the point estimate on all studies.
- `compare_systems`, on the same studies scored by systems A and B:
  - paired approximate randomization (Noreen, 1989; Riezler & Maxwell, 2005): in each of `trials` shuffles,
    swap A's and B's output of every study with probability 1/2 and recompute both corpus scores;
    p = (1 + #{|score(A') - score(B')| >= |score(A) - score(B)|}) / (1 + trials);
  - paired bootstrap (Koehn, 2004; Efron & Tibshirani, 1993, sec. 16.4): resample studies (the same ones for
    both systems), delta_b = score_b(A) - score_b(B); two-sided p = (1 + #{|delta_b - delta| >= |delta|}) /
    (1 + resamples) (the bootstrap distribution shifted to the null of no difference), plus the percentile
    interval of delta.
  A file compared with itself gives p = 1 in both tests (every shuffle ties the observed difference 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .statistics import FamilyStatistics

_TIE = 1e-12  # differences within this are ties (floating-point noise of recomputed corpus scores)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float


@dataclass(frozen=True)
class Comparison:
    """One metric of system A against system B on the same studies."""

    a: float
    b: float
    difference: float
    p_randomization: float
    p_bootstrap: float
    difference_low: float
    difference_high: float


def resample_weights(n_studies: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, n_studies)`` counts: how often each study is drawn in each bootstrap resample."""
    if n_studies < 1:
        raise ValueError("the bootstrap needs at least one study")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_studies, size=(resamples, n_studies))
    offsets = (np.arange(resamples) * n_studies)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=resamples * n_studies).reshape(resamples, n_studies)


def _scores(statistics: Sequence[FamilyStatistics], weights: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values for family in statistics for name, values in family.corpus(weights).items()}


def _paired_scores(statistics: Sequence[FamilyStatistics], weights_a: np.ndarray, weights_b: np.ndarray):
    """Scores of both weightings from one call per family (CIDEr reuses work between rows that share weights)."""
    both = _scores(statistics, np.vstack([weights_a, weights_b]))
    cut = len(weights_a)
    return {k: v[:cut] for k, v in both.items()}, {k: v[cut:] for k, v in both.items()}


def bootstrap_intervals(
    statistics: Sequence[FamilyStatistics],
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """The percentile bootstrap interval of every score of `statistics` (all over the same studies)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    n_studies = _common_rows(statistics)
    estimates = _scores(statistics, np.ones((1, n_studies)))
    replicates = _scores(statistics, resample_weights(n_studies, resamples, seed))
    tail = (1 - level) / 2
    return {
        name: Interval(float(estimates[name][0]), float(np.quantile(values, tail)),
                       float(np.quantile(values, 1 - tail)), level)
        for name, values in replicates.items()
    }


def compare_systems(
    statistics: Sequence[FamilyStatistics],
    trials: int = 1000,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Comparison]:
    """Paired approximate randomization and paired bootstrap for each score.

    `statistics` are built on 2N rows: system A's N studies, then system B's N studies in the same order
    (the references repeated), so that a weight row picks, per study, A's output, B's output or both.
    """
    n_rows = _common_rows(statistics)
    if n_rows % 2:
        raise ValueError("compare_systems needs statistics over A's studies followed by B's (an even count)")
    n = n_rows // 2
    ones, zeros = np.ones((1, n)), np.zeros((1, n))
    observed_a = _scores(statistics, np.hstack([ones, zeros]))
    observed_b = _scores(statistics, np.hstack([zeros, ones]))

    rng = np.random.default_rng(seed)
    swap = rng.integers(0, 2, size=(trials, n)).astype(np.float64)
    shuffled_a, shuffled_b = _paired_scores(statistics, np.hstack([1 - swap, swap]), np.hstack([swap, 1 - swap]))

    counts = resample_weights(n, resamples, seed + 1)
    zeros = np.zeros_like(counts)
    boot_a, boot_b = _paired_scores(statistics, np.hstack([counts, zeros]), np.hstack([zeros, counts]))

    tail = (1 - level) / 2
    results = {}
    for name in observed_a:
        a, b = float(observed_a[name][0]), float(observed_b[name][0])
        difference = a - b
        randomized = np.abs(shuffled_a[name] - shuffled_b[name])
        p_randomization = (1 + int(np.sum(randomized >= abs(difference) - _TIE))) / (1 + trials)
        deltas = boot_a[name] - boot_b[name]
        p_bootstrap = (1 + int(np.sum(np.abs(deltas - difference) >= abs(difference) - _TIE))) / (1 + resamples)
        results[name] = Comparison(
            a=a, b=b, difference=difference, p_randomization=p_randomization, p_bootstrap=p_bootstrap,
            difference_low=float(np.quantile(deltas, tail)), difference_high=float(np.quantile(deltas, 1 - tail)),
        )
    return results


def _common_rows(statistics: Sequence[FamilyStatistics]) -> int:
    if not statistics:
        raise ValueError("no metric statistics to resample (were all metrics skipped?)")
    sizes = {family.n_rows for family in statistics}
    if len(sizes) != 1:
        raise ValueError(f"metric statistics cover different numbers of studies: {sorted(sizes)}")
    return sizes.pop()


__all__ = ["Comparison", "Interval", "bootstrap_intervals", "compare_systems", "resample_weights"]
