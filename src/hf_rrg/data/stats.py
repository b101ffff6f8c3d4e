"""Dataset statistics: split sizes, images per study, cleaned report lengths and vocabulary size."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["dataset_statistics", "format_statistics", "summarize_lengths"]


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method) of already sorted values."""
    if not sorted_values:
        return float("nan")
    position = (len(sorted_values) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low))


def summarize_lengths(values: Sequence[float]) -> dict[str, float]:
    """mean / median / p95 / min / max of `values` (NaN for an empty sequence)."""
    ordered = sorted(values)
    if not ordered:
        return {k: float("nan") for k in ("mean", "median", "p95", "min", "max")}
    return {
        "mean": sum(ordered) / len(ordered),
        "median": _percentile(ordered, 50),
        "p95": _percentile(ordered, 95),
        "min": float(ordered[0]),
        "max": float(ordered[-1]),
    }


def dataset_statistics(
    dataset_dict: Mapping[str, Any], cleaner: str = "r2gen_iu_xray", min_count: int = 3
) -> dict[str, Any]:
    """Statistics of a `DatasetDict` (or any mapping of split name to `Dataset` with a `report` column).

    Returns a dict with:
      - `splits`: {split: number of examples};
      - `images_per_study`: {split: {mean, median, p95, min, max}} when an `images` column exists;
      - `report_tokens`: {split: {mean, median, p95, min, max}} of the report length in tokens after
        `clean_report(report, cleaner)` (whitespace-split);
      - `vocab_size`: the number of distinct cleaned tokens occurring at least `min_count` times in the
        `train` split (the first split when there is no `train`); special tokens (<pad>, <unk>, <bos>, <eos>)
        are NOT counted;
      - `cleaner`, `min_count`, `vocab_split`.
    """
    import pyarrow.compute as pc

    from hf_rrg.modeling.report_cleaning import clean_report

    if not dataset_dict:
        raise ValueError("dataset_statistics got no splits.")
    vocab_split = "train" if "train" in dataset_dict else next(iter(dataset_dict))
    stats: dict[str, Any] = {
        "cleaner": cleaner,
        "min_count": min_count,
        "vocab_split": vocab_split,
        "splits": {},
        "images_per_study": {},
        "report_tokens": {},
    }
    counts: Counter[str] = Counter()
    for split, dataset in dataset_dict.items():
        stats["splits"][split] = len(dataset)
        if "report" not in dataset.column_names:
            raise ValueError(
                f"Split {split!r} has no 'report' column; its columns are {dataset.column_names}."
            )
        if "images" in dataset.column_names:
            images = dataset.select_columns(["images"]).with_format("arrow")[:].column("images")
            n_images = [n or 0 for n in pc.list_value_length(images).to_pylist()]
            stats["images_per_study"][split] = summarize_lengths(n_images)
        lengths = []
        for report in dataset["report"]:
            tokens = clean_report(report or "", cleaner).split()
            lengths.append(len(tokens))
            if split == vocab_split:
                counts.update(tokens)
        stats["report_tokens"][split] = summarize_lengths(lengths)
    stats["vocab_size"] = sum(1 for c in counts.values() if c >= min_count)
    return stats


def format_statistics(stats: Mapping[str, Any]) -> str:
    """A short human-readable table of `dataset_statistics` output."""
    lines = ["split        examples  images/study(mean)  tokens mean  median   p95    max"]
    for split, n in stats["splits"].items():
        images = stats["images_per_study"].get(split, {}).get("mean", float("nan"))
        tok = stats["report_tokens"][split]
        lines.append(
            f"{split:<12} {n:>8}  {images:>18.2f}  {tok['mean']:>11.2f}  {tok['median']:>6.1f}"
            f"  {tok['p95']:>5.1f}  {tok['max']:>5.0f}"
        )
    lines.append(
        f"vocabulary: {stats['vocab_size']} tokens with count >= {stats['min_count']} in "
        f"{stats['vocab_split']!r} after cleaner {stats['cleaner']!r} (special tokens not included)"
    )
    return "\n".join(lines)
