"""`training_curves.png`: train loss (and its components) and validation metrics over epochs.

Drawn with matplotlib when it is installed; otherwise with a small PIL plotter (always available), so every run
gets its picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _series(history: Sequence[dict[str, Any]], prefix: str) -> dict[str, tuple[list[int], list[float]]]:
    series: dict[str, tuple[list[int], list[float]]] = {}
    for record in history:
        for key, value in record.items():
            if key.startswith(prefix) and isinstance(value, (int, float)):
                xs, ys = series.setdefault(key[len(prefix) :], ([], []))
                xs.append(int(record["epoch"]) + 1)
                ys.append(float(value))
    return series


def plot_training_curves(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write the curves of `history` (one dict per epoch: `epoch`, `train/<loss>`, `val/<metric>`) to `path`."""
    path = Path(path)
    panels = [("train loss", _series(history, "train/")), ("validation", _series(history, "val/"))]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _plot_with_pil(panels, path)
        return path
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, (title, series) in zip(axes, panels):
        for name, (xs, ys) in series.items():
            axis.plot(xs, ys, marker="o", markersize=3, label=name)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        if series:
            axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _plot_with_pil(panels: list[tuple[str, dict]], path: Path) -> None:
    from PIL import Image, ImageDraw

    width, height, margin = 500, 360, 50
    image = Image.new("RGB", (width * len(panels), height), "white")
    draw = ImageDraw.Draw(image)
    for p, (title, series) in enumerate(panels):
        left, top = p * width + margin, 30
        right, bottom = (p + 1) * width - 20, height - margin
        draw.rectangle([left, top, right, bottom], outline="black")
        draw.text((left, 8), f"{title} (x: epoch)", fill="black")
        values = [y for _, ys in series.values() for y in ys]
        epochs = [x for xs, _ in series.values() for x in xs]
        if not values:
            continue
        y_low, y_high = min(values), max(values)
        y_high = y_high if y_high > y_low else y_low + 1.0
        x_low, x_high = min(epochs), max(epochs)
        x_high = x_high if x_high > x_low else x_low + 1

        def to_xy(x: float, y: float) -> tuple[float, float]:
            return (
                left + (x - x_low) / (x_high - x_low) * (right - left),
                bottom - (y - y_low) / (y_high - y_low) * (bottom - top),
            )

        draw.text((4 + p * width, top), f"{y_high:.3g}", fill="black")
        draw.text((4 + p * width, bottom - 10), f"{y_low:.3g}", fill="black")
        draw.text((left, bottom + 5), str(x_low), fill="black")
        draw.text((right - 20, bottom + 5), str(x_high), fill="black")
        for s, (name, (xs, ys)) in enumerate(series.items()):
            color = _COLORS[s % len(_COLORS)]
            points = [to_xy(x, y) for x, y in zip(xs, ys)]
            if len(points) > 1:
                draw.line(points, fill=color, width=2)
            for x, y in points:
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
            draw.text((left + 8, top + 6 + 12 * s), name, fill=color)
    image.save(path)


__all__ = ["plot_training_curves"]
