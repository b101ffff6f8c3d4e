"""What ASGK looked at, as one PNG (the paper's Fig. 3): the heat map over the image, the auxiliary region's box, the
medical tag graph (nodes whose value exceeds 0.5, edges whose weight exceeds 0.3; the strongest ones when none do)
and the generated report. Drawn with PIL only (matplotlib is optional in hf-rrg)."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

PANEL = 320


@dataclass
class TagGraphView:
    """The part of the graph a figure shows: (tag, value) nodes and (i, j, weight) edges between them."""

    nodes: list[tuple[str, float]]
    edges: list[tuple[int, int, float]]


def select_graph(
    node_values: torch.Tensor,
    edge_weights: torch.Tensor,
    tag_names: list[str],
    node_threshold: float = 0.5,
    edge_threshold: float = 0.3,
    min_nodes: int = 3,
    max_nodes: int = 10,
    min_edges: int = 3,
) -> TagGraphView:
    """Nodes with value > `node_threshold` (the `min_nodes` highest when fewer, at most `max_nodes`, highest
    first) and the edges between them with weight > `edge_threshold` (the `min_edges` strongest when none)."""
    values = node_values.detach().float().cpu()
    order = torch.argsort(values, descending=True).tolist()
    chosen = [i for i in order if values[i] > node_threshold][:max_nodes]
    if len(chosen) < min_nodes:
        chosen = order[: min(min_nodes, len(order))]
    weights = edge_weights.detach().float().cpu()
    pairs = [(a, b, float(weights[i, j])) for a, i in enumerate(chosen) for b, j in enumerate(chosen) if a != b]
    edges = [pair for pair in pairs if pair[2] > edge_threshold]
    if not edges:
        edges = sorted(pairs, key=lambda p: -p[2])[:min_edges]
    return TagGraphView([(tag_names[i], float(values[i])) for i in chosen], edges)


def _heat_colors(heat: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB (dark blue -> red -> yellow)."""
    r = np.clip(heat * 2.0, 0, 1)
    g = np.clip(heat * 2.0 - 1.0, 0, 1)
    b = np.clip(0.6 - heat * 1.2, 0, 1)
    return (np.stack([r, g, b], -1) * 255).astype(np.uint8)


def render_figure(
    image: Image.Image,
    heat: torch.Tensor,
    box: tuple[int, int, int, int],
    graph: TagGraphView,
    report: str | None = None,
) -> Image.Image:
    """Compose the figure: [image + heat map | image + region box | tag graph] and the report below.

    `image` is what the model read (its pixel grid is the box's), `heat` an (h, w) map in [0, 1], `box` the pixel
    box (y0, y1, x0, x1)."""
    font = ImageFont.load_default()
    base = image.convert("RGB")
    width, height = base.size
    heat_image = Image.fromarray(_heat_colors(heat.detach().float().cpu().numpy())).resize((width, height), Image.BILINEAR)
    overlay = Image.blend(base, heat_image, 0.45)
    boxed = base.copy()
    y0, y1, x0, x1 = (int(v) for v in box)
    draw = ImageDraw.Draw(boxed)
    draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=(0, 255, 0), width=max(1, width // 80))
    panels = [overlay.resize((PANEL, PANEL)), boxed.resize((PANEL, PANEL)), _graph_panel(graph, font)]
    lines = textwrap.wrap(report or "", 110)[:8]
    canvas = Image.new("RGB", (PANEL * 3 + 40, PANEL + 40 + 14 * (len(lines) + 1)), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (panel, title) in enumerate(zip(panels, ("heat map (Eq. 9)", "auxiliary region", "medical tag graph"))):
        canvas.paste(panel, (10 + k * (PANEL + 10), 24))
        draw.text((10 + k * (PANEL + 10), 6), title, fill="black", font=font)
    for n, line in enumerate(lines):
        draw.text((10, PANEL + 34 + 14 * n), line, fill="black", font=font)
    return canvas


def _graph_panel(graph: TagGraphView, font: Any) -> Image.Image:
    panel = Image.new("RGB", (PANEL, PANEL), (250, 250, 250))
    draw = ImageDraw.Draw(panel)
    n = len(graph.nodes)
    centre, radius = PANEL / 2, PANEL * 0.32
    points = [(centre + radius * math.cos(2 * math.pi * k / max(n, 1) - math.pi / 2),
               centre + radius * math.sin(2 * math.pi * k / max(n, 1) - math.pi / 2)) for k in range(n)]  # fmt: skip
    for a, b, weight in graph.edges:
        (xa, ya), (xb, yb) = points[a], points[b]
        draw.line([xa, ya, xb, yb], fill=(90, 90, 200), width=max(1, int(1 + 6 * weight)))
        draw.text(((xa + xb) / 2, (ya + yb) / 2), f"{weight:.2f}", fill=(60, 60, 160), font=font)
    for (name, value), (x, y) in zip(graph.nodes, points):
        size = 6 + 10 * value
        draw.ellipse([x - size, y - size, x + size, y + size], fill=(220, 80, 60), outline="black")
        label = f"{name[:22]} {value:.2f}"
        draw.text((max(2, min(x - 3 * len(label), PANEL - 6 * len(label))), y + size + 2), label, fill="black", font=font)
    return panel


def _displayed_image(pixel_values: torch.Tensor, image_processor: Any) -> Image.Image:
    """The (3, H, W) normalised tensor the model read, back to an 8-bit image."""
    mean = torch.tensor(image_processor.image_mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(image_processor.image_std, dtype=torch.float32).view(3, 1, 1)
    pixels = (pixel_values.float().cpu() * std + mean).clamp(0, 1)
    return Image.fromarray((pixels.permute(1, 2, 0).numpy() * 255).astype(np.uint8))


@torch.no_grad()
def visualize(
    model: Any,
    processor: Any,
    image: str | Path | Image.Image,
    out: str | Path,
    node_threshold: float = 0.5,
    edge_threshold: float = 0.3,
    generation_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run an ASGK model on one image and write the Fig. 3 style PNG to `out`; returns what it drew."""
    from ..modeling.image_loading import load_image

    if getattr(model.config, "model_type", None) != "asgk":
        raise ValueError(f"hf-rrg asgk visualize needs an ASGK model, got model_type {model.config.model_type!r}")
    picture = image if isinstance(image, Image.Image) else load_image(image)
    inputs = processor(images=[[picture]])
    model.eval()
    device = next(model.parameters()).device
    pixel_values, view_mask = inputs["pixel_values"].to(device), inputs["view_mask"].to(device)
    encoded = model.predict_tags(pixel_values, view_mask)
    ids = model.generate(pixel_values=pixel_values, view_mask=view_mask, **(generation_kwargs or {}))
    report = processor.batch_decode(ids.tolist(), skip_special_tokens=True)[0]
    graph = select_graph(encoded.node_values[0], encoded.edge_weights[0], model.config.tag_names, node_threshold,
                         edge_threshold)  # fmt: skip
    box = tuple(int(v) for v in encoded.region_boxes[0, 0].tolist())
    figure = render_figure(
        _displayed_image(pixel_values[0, 0], processor.image_processor), encoded.heat_maps[0, 0], box, graph, report
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(out, format="PNG")
    return {"out": str(out), "report": report, "box": list(box), "nodes": graph.nodes, "edges": graph.edges}


__all__ = ["TagGraphView", "render_figure", "select_graph", "visualize"]
