"""XProNet's prototype matrix initialisation (§3.2 "Prototype Matrix Initialization", Eq. 4-7).

Over the training split:
1. global image features o^i (C_1; ResNet-101: 2048) from the model's visual backbone for every study, and o^if
   for its horizontal flip (a study's views are averaged over its real views);
2. report features o^t (C_2) from a text encoder (any Hugging Face encoder id or local path; mean-pooled over the
   tokens or the first ([CLS]) token); with no text encoder (`None`, offline demos) o^t is zero, i.e. the
   prototypes start from image features only;
3. per class k, the samples with y_k = 1 (Eq. 4) give two feature sets Concat(o^i, o^t) and Concat(o^if, o^t)
   (Eq. 5); K-means on each gives N_p / 2 centres (10 + 10 = 20 as the official file was made) (Eq. 6-7).

Small classes are handled explicitly: a class with fewer samples than N_p / 2 takes all its samples as centres and
fills the rest by repeating them cyclically; a class with no sample at all takes the centres of the whole training
set's features (class-agnostic), so its prototypes keep the scale of the others. Both are reported.

K-means is a deterministic torch implementation (k-means++ seeding from a seeded generator, Lloyd iterations in
float64, an emptied cluster re-seeded with the point farthest from its centre).

PM is written as safetensors under key `"prototypes"` (N_l, N_p, D) with the slot names and settings as metadata;
`load_prototypes_into(model, path)` puts it into an `XProNetForConditionalGeneration`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

PROTOTYPE_KEY = "prototypes"
TEXT_POOLINGS = ("mean", "cls")


def kmeans(
    points: torch.Tensor, num_clusters: int, seed: int = 0, iterations: int = 100, tolerance: float = 1e-8
) -> torch.Tensor:
    """Deterministic K-means: (n, D) points -> (num_clusters, D) centres (cluster means, Eq. 7).

    Requires n >= num_clusters (the caller handles smaller sets). k-means++ seeding with a `torch.Generator`
    seeded by `seed`; Lloyd iterations until no centre moves more than `tolerance` (squared) or `iterations`.
    """
    n = points.size(0)
    if num_clusters < 1 or n < num_clusters:
        raise ValueError(f"kmeans needs 1 <= num_clusters <= number of points, got {num_clusters} and {n} points")
    x = points.detach().to(torch.float64).cpu()
    generator = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(n, (1,), generator=generator)]
    for _ in range(1, num_clusters):  # k-means++: next centre with probability ~ squared distance
        distance = torch.cdist(x, centres).pow(2).min(dim=1).values
        if distance.sum() <= 0:  # all points already covered (duplicates): take the first unused point
            centres = torch.cat([centres, x[len(centres) : len(centres) + 1]])
            continue
        choice = torch.multinomial(distance / distance.sum(), 1, generator=generator)
        centres = torch.cat([centres, x[choice]])
    for _ in range(iterations):
        distances = torch.cdist(x, centres)
        assignment = distances.argmin(dim=1)
        new = torch.zeros_like(centres).index_add_(0, assignment, x)
        sizes = torch.bincount(assignment, minlength=num_clusters).to(x.dtype)
        for cluster in (sizes == 0).nonzero().flatten().tolist():  # re-seed an empty cluster
            farthest = distances.gather(1, assignment[:, None]).squeeze(1).argmax()
            new[cluster], sizes[cluster] = x[farthest], 1.0
        new = new / sizes[:, None]
        shift = (new - centres).pow(2).sum(dim=1).max()
        centres = new
        if shift <= tolerance:
            break
    return centres.to(points.dtype)


def _centres_or_points(features: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """`count` K-means centres, or every point repeated cyclically when there are fewer points than `count`."""
    if features.size(0) >= count:
        return kmeans(features, count, seed=seed)
    repeat = torch.arange(count) % features.size(0)
    return features[repeat]


@dataclass
class PrototypeInitResult:
    """The initial PM (N_l, N_p, D), per-class sample counts and the classes handled specially."""

    prototypes: torch.Tensor
    class_sizes: dict[str, int]
    small_classes: list[str] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)


def prototypes_from_features(
    image_features: torch.Tensor,
    flipped_features: torch.Tensor,
    text_features: torch.Tensor,
    labels: torch.Tensor,
    observation_names: Sequence[str],
    num_prototypes_per_class: int = 20,
    seed: int = 0,
) -> PrototypeInitResult:
    """Eq. 4-7 on precomputed features: image (n, C_1), flipped image (n, C_1), text (n, C_2), labels (n, N_l).

    N_p / 2 centres on Concat(image, text) and N_p / 2 on Concat(flipped, text) per class; N_p must be even.
    """
    if num_prototypes_per_class % 2:
        raise ValueError(f"num_prototypes_per_class must be even (half unflipped, half flipped), got "
                         f"{num_prototypes_per_class}")  # fmt: skip
    n = labels.size(0)
    if not (image_features.size(0) == flipped_features.size(0) == text_features.size(0) == n):
        raise ValueError("image, flipped image, text features and labels must have the same number of samples")
    if labels.size(1) != len(observation_names):
        raise ValueError(f"labels have {labels.size(1)} slots, observation_names {len(observation_names)}")
    unflipped = torch.cat([image_features, text_features], dim=1).float()
    flipped = torch.cat([flipped_features, text_features], dim=1).float()
    half = num_prototypes_per_class // 2
    rows, sizes, small, empty = [], {}, [], []
    for k, name in enumerate(observation_names):
        members = (labels[:, k] > 0.5).nonzero().flatten()
        sizes[name] = int(members.numel())
        if members.numel() == 0:
            empty.append(name)
            members = torch.arange(n)
        elif members.numel() < half:
            small.append(name)
        rows.append(torch.cat([
            _centres_or_points(unflipped[members], half, seed + 2 * k),
            _centres_or_points(flipped[members], half, seed + 2 * k + 1),
        ]))  # fmt: skip
    return PrototypeInitResult(torch.stack(rows), sizes, small, empty)


@torch.no_grad()
def image_features(
    visual_extractor: torch.nn.Module,
    pixel_batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global features (n, C_1) of each study and of its horizontal flip: the backbone's pooled feature averaged
    over the study's real views. `pixel_batches` yields (pixel_values (B, V, 3, H, W), view_mask (B, V))."""
    from tqdm.auto import tqdm

    visual_extractor.eval().to(device)
    plain, flipped = [], []
    for pixel_values, view_mask in tqdm(pixel_batches, desc="image features", disable=not progress):
        pixel_values, view_mask = pixel_values.to(device), view_mask.to(device)
        for store, pixels in ((plain, pixel_values), (flipped, pixel_values.flip(-1))):
            _, _, pooled = visual_extractor(pixels, view_mask)
            weights = view_mask.to(pooled.dtype).unsqueeze(-1)
            store.append(((pooled * weights).sum(1) / weights.sum(1).clamp_min(1.0)).float().cpu())
    return torch.cat(plain), torch.cat(flipped)


@torch.no_grad()
def text_features(
    reports: Sequence[str],
    text_encoder: str | Path,
    pooling: str = "mean",
    batch_size: int = 16,
    max_length: int = 512,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> torch.Tensor:
    """Report features (n, C_2) from a Hugging Face encoder (hub id or local folder): mean over the real tokens of
    the last hidden state (`pooling="mean"`) or its first token (`"cls"`)."""
    from tqdm.auto import tqdm
    from transformers import AutoModel, AutoTokenizer

    if pooling not in TEXT_POOLINGS:
        raise ValueError(f"text pooling must be one of {TEXT_POOLINGS}, got {pooling!r}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(text_encoder))
        encoder = AutoModel.from_pretrained(str(text_encoder)).eval().to(device)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"could not load text encoder {text_encoder!s}: {error}. Pass a Hugging Face encoder id (e.g. a BERT "
            "checkpoint) or a local folder holding its config, weights and tokenizer."
        ) from error
    features = []
    for start in tqdm(range(0, len(reports), batch_size), desc="report features", disable=not progress):
        batch = tokenizer(list(reports[start : start + batch_size]), padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt").to(device)  # fmt: skip
        hidden = encoder(**batch).last_hidden_state
        if pooling == "cls":
            features.append(hidden[:, 0].float().cpu())
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            features.append(((hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)).float().cpu())
    return torch.cat(features)


class StudyPixelBatches(Sequence):
    """(pixel_values, view_mask) of a dataset's studies in batches, decoded and processed one batch at a time (so a
    large training split never sits in memory as pixels)."""

    def __init__(self, dataset: Any, processor: Any, batch_size: int, image_column: str = "images") -> None:
        self.dataset, self.processor, self.batch_size, self.image_column = dataset, processor, batch_size, image_column

    def __len__(self) -> int:
        return (len(self.dataset) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.batch_size
        rows = self.dataset[start : start + self.batch_size]
        encoded = self.processor(rows[self.image_column], augment=False, return_tensors="pt")
        return encoded["pixel_values"], encoded["view_mask"]


def initialize_prototypes(
    visual_extractor: torch.nn.Module,
    dataset: Any,
    processor: Any,
    label_file: Any,
    text_encoder: str | Path | None,
    num_prototypes_per_class: int = 20,
    observation_names: Sequence[str] | None = None,
    text_pooling: str = "mean",
    batch_size: int = 8,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    text_dim: int | None = None,
    text_max_length: int = 512,
) -> PrototypeInitResult:
    """The whole §3.2 initialisation over a training `Dataset` (`id`, `images`, `report`).

    Args:
        visual_extractor: the model's `VisualExtractor` (`model.encoder.visual_extractor`; ImageNet weights as the
            paper's pretrained ResNet-101), or a standalone one.
        dataset: the training split.
        processor: the `RRGImageProcessor` used for training (its evaluation transform: no augmentation).
        label_file: a `LabelFile` (`hf_rrg.xpronet.labels`) covering the dataset's ids.
        text_encoder: Hugging Face encoder id or local path (`text_features`); None: no text encoder, the text
            part of every feature is `text_dim` zeros (image-only prototypes, for offline runs).
        num_prototypes_per_class: N_p (even: half from unflipped, half from flipped images).
        observation_names: slot order of PM (default: the label file's; pass `model.config.observation_names`).
        text_pooling: "mean" or "cls".
        seed: K-means seed (the result is a deterministic function of features and seed).
        text_dim: C_2. Required without a text encoder; with one, the encoder's feature size must equal it.
        text_max_length: reports are cut to this many text-encoder tokens.
    """
    names = list(observation_names) if observation_names is not None else label_file.observation_names
    ids = [str(i) for i in dataset["id"]]
    labels = label_file.tensor(ids, names)
    if text_encoder is None and text_dim is None:
        raise ValueError("without a text encoder, pass text_dim (C_2, the zero text part of each prototype)")
    batches = StudyPixelBatches(dataset, processor, batch_size)
    plain, flipped = image_features(visual_extractor, batches, device, progress)
    if text_encoder is None:
        texts = torch.zeros(len(ids), int(text_dim))
    else:
        texts = text_features(dataset["report"], text_encoder, text_pooling, batch_size, text_max_length,
                              device=device, progress=progress)  # fmt: skip
        if text_dim is not None and texts.size(1) != text_dim:
            raise ValueError(
                f"text encoder {text_encoder!s} gives {texts.size(1)}-d report features but the prototypes' text "
                f"part has {text_dim} dims (prototype_text_dim); use an encoder of that size or set "
                f"prototype_text_dim={texts.size(1)}"
            )
    return prototypes_from_features(plain, flipped, texts, labels, names, num_prototypes_per_class, seed)


def save_prototype_file(path: str | Path, result: PrototypeInitResult, observation_names: Sequence[str],
                        settings: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Write PM as safetensors (`"prototypes"`: (N_l, N_p, D) float32) with JSON metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "observation_names": json.dumps(list(observation_names)),
        "class_sizes": json.dumps(result.class_sizes),
        "small_classes": json.dumps(result.small_classes),
        "empty_classes": json.dumps(result.empty_classes),
        "settings": json.dumps(settings or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file({PROTOTYPE_KEY: result.prototypes.float().contiguous()}, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def load_prototype_file(path: str | Path) -> tuple[torch.Tensor, dict[str, Any]]:
    """Read PM and its metadata (JSON values decoded) from a file written by `save_prototype_file`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prototype file {path} does not exist; make it with `hf-rrg xpronet init-prototypes`")
    with safe_open(str(path), framework="pt") as handle:
        if PROTOTYPE_KEY not in handle.keys():
            raise ValueError(f"{path} has no {PROTOTYPE_KEY!r} tensor (keys: {list(handle.keys())})")
        tensor = handle.get_tensor(PROTOTYPE_KEY)
        metadata = {key: json.loads(value) for key, value in (handle.metadata() or {}).items()}
    return tensor, metadata


def load_prototypes_into(model: Any, path: str | Path) -> dict[str, Any]:
    """Load PM from `path` into an XProNet model (checking its slot names); returns the file's metadata."""
    tensor, metadata = load_prototype_file(path)
    names = metadata.get("observation_names")
    if names is not None and list(names) != list(model.config.observation_names):
        raise ValueError(
            f"prototype file {path} was made for slots {names}, the model has {model.config.observation_names}"
        )
    model.load_prototypes(tensor)
    return metadata
