"""CoAtt's Table 3: tag prediction of the multi-label classifier (MLC, Eq. 1), scored by recall@k.

For each image (study) with at least one ground-truth tag in the vocabulary, recall@k = |top-k predicted tags ∩ its
tags| / |its tags|; the table reports the mean over those images (§4.6: R@5, R@10, R@20). Images without a tag in
the vocabulary cannot be scored and are counted apart. The ranking is the MLC's tag logits (Eq. 1 is a softmax over
them, which does not change the order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .tags import TagVocabulary

#: The paper's Table 3 columns.
TABLE_3_KS: tuple[int, ...] = (5, 10, 20)
TAGS_FILE = "tags.json"  # the recipe's vocabulary file in a run folder (`hf_rrg.coatt.recipe.TAGS_FILE`)


def recall_at_k(scores: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = TABLE_3_KS) -> dict[str, Any]:
    """Mean recall@k over the rows of `targets` (N, L) that have a positive tag, ranking the columns of `scores`
    (N, L) per row (ties: the lower column first). A k above L counts every tag.

    Returns `{"recall@5": ..., ..., "images_scored": n, "images_without_tags": m}`."""
    if scores.shape != targets.shape or scores.dim() != 2:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must be the same (N, L)")
    if not ks or min(ks) < 1:
        raise ValueError(f"k values must be >= 1, got {list(ks)}")
    positive = targets > 0.5
    counts = positive.sum(dim=1)
    scored = counts > 0
    result: dict[str, Any] = {"images_scored": int(scored.sum()), "images_without_tags": int((~scored).sum())}
    if not scored.any():
        raise ValueError("no image has a ground-truth tag in the vocabulary: recall@k is undefined")
    order = torch.sort(scores.float(), dim=1, descending=True, stable=True).indices
    ranked_hits = positive.gather(1, order)[scored].float()
    for k in ks:
        hits = ranked_hits[:, : min(k, scores.size(1))].sum(dim=1)
        result[f"recall@{k}"] = float((hits / counts[scored].float()).mean())
    return result


@torch.no_grad()
def predict_tag_scores(
    model: Any, image_processor: Any, examples: Sequence[Mapping[str, Any]], batch_size: int = 16, progress: bool = True
) -> torch.Tensor:
    """The MLC's tag logits (N, L) for the studies in `examples` (rows with an `images` list), in order."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    chunks = []
    starts = range(0, len(examples), batch_size)
    for start in tqdm(starts, desc="CoAtt tag prediction", disable=not progress, unit="batch"):
        rows = [examples[i] for i in range(start, min(start + batch_size, len(examples)))]
        inputs = image_processor([list(row["images"]) for row in rows], return_tensors="pt")
        encoded = model.encode(inputs["pixel_values"].to(device), inputs["view_mask"].to(device))
        chunks.append(encoded.tag_logits.float().cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0, model.config.num_tags)


def resolve_model_and_tags(path: str | Path, tags: str | Path | None = None) -> tuple[Path, TagVocabulary]:
    """(model folder, tag vocabulary) from a run folder (`model/` + `tags.json`) or a model folder (+ `tags`)."""
    path = Path(path)
    model_dir = path / "model" if (path / "model" / "config.json").is_file() else path
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{path} is neither a CoAtt model folder nor a run folder with model/config.json")
    if tags is None:
        folders = list(dict.fromkeys([path, model_dir]))
        found = next((folder / TAGS_FILE for folder in folders if (folder / TAGS_FILE).is_file()), None)
        if found is None:
            raise FileNotFoundError(
                f"no {TAGS_FILE} in {' or '.join(map(str, folders))}: pass the run's tag vocabulary with --tags (the "
                "MLC's slots follow it)"
            )
        tags = found
    return model_dir, TagVocabulary.load(tags)


def evaluate_tag_recall(
    model_dir: str | Path,
    vocabulary: TagVocabulary,
    examples: Sequence[Mapping[str, Any]],
    ks: Sequence[int] = TABLE_3_KS,
    batch_size: int = 16,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Table 3 for one model: load it, predict every study's tags, score recall@k against the vocabulary's
    multi-hot ground truth of `examples`."""
    from transformers import AutoImageProcessor, AutoModelForImageTextToText

    import hf_rrg  # noqa: F401  (registers the Auto classes)

    model = AutoModelForImageTextToText.from_pretrained(str(model_dir)).eval()
    if model.config.model_type != "coatt":
        raise ValueError(f"{model_dir} holds a {model.config.model_type!r} model; tag recall is CoAtt's Table 3")
    if model.config.num_tags != len(vocabulary):
        raise ValueError(
            f"the model predicts {model.config.num_tags} tags but the vocabulary has {len(vocabulary)}: use the tag "
            "file of the run that trained it"
        )
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    image_processor = AutoImageProcessor.from_pretrained(str(model_dir))
    scores = predict_tag_scores(model, image_processor, examples, batch_size, progress)
    result = recall_at_k(scores, vocabulary.multi_hot(examples), ks)
    result.update(tag_source=vocabulary.source, num_tags=len(vocabulary), images=len(examples))
    return result


__all__ = [
    "TABLE_3_KS",
    "evaluate_tag_recall",
    "predict_tag_scores",
    "recall_at_k",
    "resolve_model_and_tags",
]
