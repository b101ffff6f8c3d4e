"""What explains a generated report, per method, as numbers and as pictures (heat-map overlays).

- R2Gen, R2GenCMN, XProNet and ITHN (the R2Gen family): the decoder's cross-attention from each generated token to
  the encoder tokens, averaged over heads and layers, then over the tokens of each sentence. The encoder tokens are
  the CNN patches of the views, view after view (`VisualExtractor`), so every sentence gets one patch map per view
  and a share of attention per view. XProNet also shows the labels its label head predicted (they choose the
  prototypes, Eq. 8-13).
- CoAtt: the visual attention α of the sentence LSTM at each sentence (Eq. 2), over the regions of every view.
- ASGK: the heat map of each view (Eq. 9), the region cropped from it and the most probable tags of the graph.
- DCRRG: the probability of each observation from the step-1 image heads (Table 7).

The maps are recomputed by one teacher-forced pass over the generated report (dropout off, so it equals what
`generate` attended to token by token; tested). This file imports only torch, numpy and PIL and no sibling, so it
can be copied alone beside a Space's ``app.py`` and work with a model loaded as remote code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

R2GEN_FAMILY = ("r2gen", "r2gencmn", "xpronet", "ithn")
SENTENCE_END = "."
TOP_TAGS = 5


@dataclass
class SentenceAttention:
    """One sentence and where the model looked while writing it: per real view an (h, w) map (the maps of all
    views of a sentence sum to 1 for attention; a heat map is in [0, 1]) and the view's share (None for heat maps)."""

    sentence: str
    maps: list[np.ndarray]
    view_share: list[float] | None = None


@dataclass
class ReportExplanation:
    """A report with what explains it: per-sentence maps over the views the model read (`views`, as it saw them),
    `findings` ((name, probability) pairs, e.g. XProNet's predicted labels) and `regions` (ASGK's crops)."""

    report: str
    method: str
    kind: str
    views: list[Image.Image]
    sentences: list[SentenceAttention] = field(default_factory=list)
    findings_title: str = ""
    findings: list[tuple[str, float]] = field(default_factory=list)
    regions: list[Image.Image] = field(default_factory=list)

    def overlays(self, alpha: float = 0.6) -> list[tuple[Image.Image, str]]:
        """(picture, caption) per sentence and view: the map drawn over the view, then ASGK's regions. The colours
        of one sentence share one scale over all its views (attention: its lowest to its highest patch; heat maps:
        0 to 1), so a view the sentence hardly attended stays uncoloured."""
        pictures = []
        for number, item in enumerate(self.sentences, start=1):
            low, high = (0.0, 1.0) if item.view_share is None else _range(item.maps)
            for view, (image, heat) in enumerate(zip(self.views, item.maps), start=1):
                share = f" ({100 * item.view_share[view - 1]:.0f}% of its attention)" if item.view_share else ""
                label = f"sentence {number}, " if len(self.sentences) > 1 else ""
                picture = heat_overlay(image, heat, alpha, low, high)
                pictures.append((picture, f"{label}view {view}{share}: {item.sentence}"))
        pictures.extend((region, f"view {view}: region cropped from the heat map")
                        for view, region in enumerate(self.regions, start=1))  # fmt: skip
        return pictures


# ------------------------------------------------------------------------------------------------ pictures


def heat_colors(heat: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 (dark blue -> red -> yellow)."""
    heat = np.asarray(heat, dtype=np.float32)
    red = np.clip(heat * 2.0, 0, 1)
    green = np.clip(heat * 2.0 - 1.0, 0, 1)
    blue = np.clip(0.6 - heat * 1.2, 0, 1)
    return (np.stack([red, green, blue], -1) * 255).astype(np.uint8)


def _range(maps: Sequence[np.ndarray]) -> tuple[float, float]:
    values = np.concatenate([np.asarray(m, dtype=np.float32).ravel() for m in maps]) if maps else np.zeros(1)
    return float(values.min()), float(values.max())


def heat_overlay(
    image: Image.Image, heat: np.ndarray, alpha: float = 0.6, low: float | None = None, high: float | None = None
) -> Image.Image:
    """`heat` (h, w) scaled from [`low`, `high`] (default: its own range) to [0, 1], resized (bilinear) to `image`,
    coloured and blended over it with an opacity of `alpha` times the scaled value (cold patches stay clear)."""
    heat = np.asarray(heat, dtype=np.float32)
    low = float(heat.min()) if low is None else low
    high = float(heat.max()) if high is None else high
    scaled = np.clip((heat - low) / (high - low), 0, 1) if high > low else np.zeros_like(heat)
    base = image.convert("RGB")
    size = base.size
    smooth = np.asarray(Image.fromarray(scaled.astype(np.float32), mode="F").resize(size, Image.BILINEAR))
    smooth = np.clip(smooth, 0, 1)
    weight = (alpha * smooth)[..., None]
    blended = np.asarray(base, dtype=np.float32) * (1 - weight) + heat_colors(smooth).astype(np.float32) * weight
    return Image.fromarray(blended.round().astype(np.uint8))


def displayed_image(pixel_values: torch.Tensor, image_processor: Any) -> Image.Image:
    """One normalised (3, H, W) view back to the 8-bit image the model read."""
    mean = torch.tensor(image_processor.image_mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(image_processor.image_std, dtype=torch.float32).view(3, 1, 1)
    pixels = (pixel_values.detach().float().cpu() * std + mean).clamp(0, 1)
    return Image.fromarray((pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


# ------------------------------------------------------------------------------------------------ attention


def patch_grid(num_patches: int, height: int, width: int) -> tuple[int, int]:
    """(rows, columns) of a CNN's patch grid with `num_patches` cells over an image of `height` x `width` pixels:
    the factorisation whose aspect ratio is closest to the image's."""
    pairs = [(rows, num_patches // rows) for rows in range(1, num_patches + 1) if num_patches % rows == 0]
    return min(pairs, key=lambda pair: abs(np.log(pair[0] / pair[1]) - np.log(height / width)))


def average_cross_attention(cross_attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-layer (batch, heads, tokens, keys) probabilities -> (batch, tokens, keys), averaged over heads and layers."""
    if not cross_attentions or any(layer is None for layer in cross_attentions):
        raise ValueError("The model returned no cross-attentions; it must support output_attentions=True.")
    return torch.stack([layer.float() for layer in cross_attentions]).mean(dim=(0, 2))


def generated_token_attention(model: Any, pixel_values: torch.Tensor, view_mask: torch.Tensor,
                              sequences: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """(batch, length - 1, views, patches): the cross-attention with which each generated token (`sequences[:, 1:]`)
    was predicted, averaged over heads and layers, from one teacher-forced pass of an R2Gen-family model."""
    with torch.no_grad():
        out = model(pixel_values=pixel_values, view_mask=view_mask, decoder_input_ids=sequences[:, :-1],
                    output_attentions=True)  # fmt: skip
    attention = average_cross_attention(out.cross_attentions)
    views = pixel_values.shape[1] if pixel_values.dim() == 5 else 1
    return attention.view(attention.size(0), attention.size(1), views, -1)


def sentence_spans(token_ids: Sequence[int], tokenizer: Any) -> list[tuple[str, int, int]]:
    """(sentence, start, end) of each sentence of one generated row `<bos> w .. . w .. <eos>`: token positions
    [start, end) hold its words and closing `.`; a last fragment without `.` ends at `<eos>` or the row's end."""
    special = {tokenizer.bos_token_id, tokenizer.pad_token_id}
    end_id = tokenizer.convert_tokens_to_ids(SENTENCE_END)
    spans, start = [], None
    for position, token in enumerate(token_ids):
        if token == tokenizer.eos_token_id:
            break
        if token in special:
            continue
        start = position if start is None else start
        if token == end_id:
            spans.append((start, position + 1))
            start = None
    else:
        position = len(token_ids)
    if start is not None:
        spans.append((start, position))
    words = [(tokenizer.decode(list(token_ids[a:b]), skip_special_tokens=True).strip(), a, b) for a, b in spans]
    return [item for item in words if item[0] and item[0] != SENTENCE_END]


def sentence_attention(token_attention: torch.Tensor, spans: list[tuple[str, int, int]], views: int,
                       grid: tuple[int, int]) -> list[SentenceAttention]:  # fmt: skip
    """Average a (length - 1, views, patches) token attention over each sentence's tokens; keep the first `views`
    (the real ones)."""
    result = []
    for sentence, start, end in spans:
        mean = token_attention[start - 1 : end - 1].mean(dim=0)[:views]  # row t - 1 predicted token t
        result.append(SentenceAttention(sentence, [m.reshape(grid).numpy() for m in mean], mean.sum(-1).tolist()))
    return result


# ------------------------------------------------------------------------------------------------ per method


def report_inputs(model: Any, processor: Any, views: Sequence[Any]) -> dict[str, torch.Tensor]:
    """`pixel_values` and `view_mask` of one study, padded as the `radiology-report-generation` pipeline pads it
    (to the image processor's `max_views`, else the model's `config.max_views`)."""
    image_processor = processor.image_processor
    limit = next((int(v) for v in (image_processor.max_views, getattr(model.config, "max_views", None))
                  if v is not None), len(views))  # fmt: skip
    if len(views) > limit:
        raise ValueError(f"This model reads at most {limit} views per study; {len(views)} were given.")
    features = image_processor([list(views)], max_views=limit, return_tensors="pt")
    device = next(model.parameters()).device
    return {"pixel_values": features["pixel_values"].to(device, model.dtype), "view_mask": features["view_mask"].to(device)}


def explain_report(model: Any, processor: Any, views: Sequence[Any],
                   generate_kwargs: dict[str, Any] | None = None) -> ReportExplanation:  # fmt: skip
    """Generate the report of one study (`views`: anything the image processor reads) and explain it (module doc).
    The report equals the `radiology-report-generation` pipeline's with the same `generate_kwargs`."""
    inputs = report_inputs(model, processor, views)
    with torch.no_grad():
        sequences = model.generate(**inputs, **(generate_kwargs or {}))
    report = processor.batch_decode(sequences, skip_special_tokens=True)[0]
    count = int(inputs["view_mask"][0].sum())
    seen = [displayed_image(inputs["pixel_values"][0, v], processor.image_processor) for v in range(count)]
    method = getattr(model.config, "model_type", "unknown")
    explanation = ReportExplanation(report, method, "", seen)
    explain = EXPLAINERS.get(method)
    if explain is not None:
        explain(model, processor, inputs, sequences[:1].cpu(), explanation)
    return explanation


def _explain_cross_attention(model, processor, inputs, sequences, explanation) -> None:
    backbone = getattr(model, "backbone", model)  # ITHN generates with its backbone
    attention = generated_token_attention(backbone, inputs["pixel_values"], inputs["view_mask"],
                                          sequences.to(inputs["pixel_values"].device)).cpu()[0]  # fmt: skip
    height, width = inputs["pixel_values"].shape[-2:]
    grid = patch_grid(attention.size(-1), height, width)
    spans = sentence_spans(sequences[0].tolist(), processor.tokenizer)
    explanation.kind = "cross-attention of the generated words (averaged over heads, layers and each sentence)"
    explanation.sentences = sentence_attention(attention, spans, len(explanation.views), grid)
    if getattr(backbone.config, "model_type", None) == "xpronet":
        _xpronet_labels(backbone, inputs, explanation)


def _xpronet_labels(model, inputs, explanation) -> None:
    encoder = model.get_encoder()
    with torch.no_grad():
        encoded = encoder(inputs["pixel_values"], inputs["view_mask"])
    if getattr(encoded, "observation_logits", None) is None:
        return
    probabilities = torch.sigmoid(encoded.observation_logits[0].float()).tolist()
    chosen = encoded.observation_labels[0].tolist()
    names = model.config.observation_names
    explanation.findings_title = "Labels the label head predicted (they choose the prototypes)"
    explanation.findings = sorted(((name, p) for name, p, c in zip(names, probabilities, chosen) if c >= 0.5),
                                  key=lambda item: -item[1])  # fmt: skip


def _explain_coatt(model, processor, inputs, sequences, explanation) -> None:
    with torch.no_grad():
        out = model(**inputs, labels=sequences.to(inputs["pixel_values"].device))
    explanation.kind = "visual attention of the sentence LSTM (Eq. 2), one map per sentence"
    if out.visual_attention is None:
        explanation.kind = "no visual attention (this CoAtt attends to tags only)"
        return
    alpha = out.visual_attention[0].float().cpu()  # (sentences, views * regions)
    views = inputs["pixel_values"].shape[1]
    alpha = alpha.view(alpha.size(0), views, -1)
    grid = patch_grid(alpha.size(-1), *inputs["pixel_values"].shape[-2:])
    spans = sentence_spans(sequences[0].tolist(), processor.tokenizer)
    explanation.sentences = [
        SentenceAttention(text, [m.reshape(grid).numpy() for m in alpha[i, : len(explanation.views)]],
                          alpha[i, : len(explanation.views)].sum(-1).tolist())
        for i, (text, _, _) in enumerate(spans[: alpha.size(0)])
    ]  # fmt: skip


def _explain_asgk(model, processor, inputs, sequences, explanation) -> None:
    with torch.no_grad():
        encoded = model.predict_tags(inputs["pixel_values"], inputs["view_mask"])
    count = len(explanation.views)
    heat = encoded.heat_maps[0, :count].float().cpu().numpy()
    explanation.kind = "heat map of the global DenseNet's features (Eq. 9) and the region cropped from it"
    explanation.sentences = [SentenceAttention(explanation.report, list(heat))]
    for view, box in zip(explanation.views, encoded.region_boxes[0, :count].tolist()):
        top, bottom, left, right = (int(v) for v in box)
        explanation.regions.append(view.crop((left, top, right, bottom)))
    values = encoded.node_values[0].float().cpu()
    order = torch.argsort(values, descending=True)[:TOP_TAGS].tolist()
    explanation.findings_title = f"Top {len(order)} tags of the medical tag graph"
    explanation.findings = [(model.config.tag_names[i], float(values[i])) for i in order]


def _explain_dcrrg(model, processor, inputs, sequences, explanation) -> None:
    with torch.no_grad():
        probabilities = model.observation_probabilities(inputs["pixel_values"], inputs["view_mask"])[0].tolist()
    explanation.kind = "per-observation probabilities of the step-1 image heads"
    explanation.findings_title = "Observation probabilities (DCCLIP image heads)"
    explanation.findings = sorted(zip(model.config.observation_names, probabilities), key=lambda item: -item[1])


EXPLAINERS = {
    **{method: _explain_cross_attention for method in R2GEN_FAMILY},
    "coatt": _explain_coatt,
    "asgk": _explain_asgk,
    "dcrrg": _explain_dcrrg,
}


def save_overlays(explanation: ReportExplanation, folder: Any, stem: str) -> list[str]:
    """Write every overlay of `explanation` as ``<stem>_<n>.png`` in `folder`; returns the paths."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, (picture, _) in enumerate(explanation.overlays(), start=1):
        path = folder / f"{stem}_{number:02d}.png"
        picture.save(path, format="PNG")
        paths.append(str(path))
    return paths


__all__ = [
    "ReportExplanation",
    "SentenceAttention",
    "average_cross_attention",
    "displayed_image",
    "explain_report",
    "generated_token_attention",
    "heat_colors",
    "heat_overlay",
    "patch_grid",
    "report_inputs",
    "save_overlays",
    "sentence_attention",
    "sentence_spans",
]
