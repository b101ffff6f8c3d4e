"""The data side of DCCLIP classification (Table 3): labelled splits, study and feature loaders, the shared
features of a table's runs and each run's share of the train split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from .observations import label_reports, label_tensor

if TYPE_CHECKING:
    from .classification import ImageEncoder


@dataclass
class LabelledSplit:
    """A split's studies (row indices into `dataset`), their step-1 labels (N, L) and ids."""

    dataset: Any
    labels: torch.Tensor
    ids: list[str]

    def select(self, rows: Sequence[int]) -> LabelledSplit:
        return LabelledSplit(self.dataset.select(list(rows)), self.labels[list(rows)], [self.ids[r] for r in rows])


def labelled_split(dataset: Any, observations: Sequence[str], progress: bool = True) -> LabelledSplit:
    """Label every report of `dataset` (a `datasets.Dataset` with `images` and `report`) for `observations`."""
    for column in ("images", "report"):
        if column not in dataset.column_names:
            raise ValueError(f"the dataset has no {column!r} column (columns: {dataset.column_names}); DCCLIP "
                             "classification needs images and the reports its labels come from")  # fmt: skip
    labels = label_tensor(label_reports(list(dataset["report"]), observations, progress=progress))
    ids = [str(i) for i in dataset["id"]] if "id" in dataset.column_names else [str(i) for i in range(len(labels))]
    return LabelledSplit(dataset, labels, ids)


class StudyImages(Dataset):
    """Items `{"images": the study's views, "labels": (L,)}` of a `LabelledSplit` (images decoded when read)."""

    def __init__(self, split: LabelledSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"images": list(self.split.dataset[index]["images"]), "labels": self.split.labels[index]}


class StudyCollator:
    """Studies -> `{"pixel_values", "view_mask", "labels"}` through the model's image processor (eval transform)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        inputs = self.processor([item["images"] for item in items])
        return {"pixel_values": inputs["pixel_values"], "view_mask": inputs["view_mask"],
                "labels": torch.stack([item["labels"] for item in items])}  # fmt: skip


def study_loader(split: LabelledSplit, processor: Any, batch_size: int, sampler: Any = None) -> DataLoader:
    return DataLoader(StudyImages(split), batch_size=batch_size, sampler=sampler, collate_fn=StudyCollator(processor))


@torch.no_grad()
def study_features(encoder: ImageEncoder, split: LabelledSplit, processor: Any, batch_size: int, device: Any,
                   progress: bool = True, description: str = "features") -> torch.Tensor:  # fmt: skip
    """v of every study of `split` (N, D) on the CPU, the encoder in eval mode (its BatchNorm statistics kept)."""
    encoder.eval()
    chunks = []
    for batch in tqdm(study_loader(split, processor, batch_size), desc=description, disable=not progress):
        chunks.append(encoder(batch["pixel_values"].to(device), batch["view_mask"].to(device)).float().cpu())
    return torch.cat(chunks)


def feature_loader(features: torch.Tensor, labels: torch.Tensor, batch_size: int, sampler: Any = None) -> DataLoader:
    def collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {"features": torch.stack([f for f, _ in items]), "labels": torch.stack([y for _, y in items])}

    return DataLoader(TensorDataset(features, labels), batch_size=batch_size, sampler=sampler, collate_fn=collate)


@dataclass
class ClassificationData:
    """What every run reads: the labelled splits, the observations and the image processor (and, for linear probes
    of the model's own encoder, the validation and test features, computed once for all runs)."""

    train: LabelledSplit
    validation: LabelledSplit | None
    test: LabelledSplit
    observations: list[str]
    processor: Any
    shared_features: dict[str, torch.Tensor] = field(default_factory=dict)

    def has_selection(self) -> bool:
        """Whether the validation split can rank epochs: some observation has positives and negatives there."""
        if self.validation is None:
            return False
        labels = self.validation.labels
        return bool((((labels == 1).sum(0) > 0) & ((labels == 0).sum(0) > 0)).any())


def train_rows(size: int, fraction: float, seed: int) -> list[int]:
    """The run's share of the train split: `max(1, round(fraction * size))` rows drawn with `seed`, in order."""
    count = max(1, round(fraction * size))
    return sorted(torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:count].tolist())


__all__ = [
    "ClassificationData",
    "LabelledSplit",
    "feature_loader",
    "labelled_split",
    "study_features",
    "study_loader",
    "train_rows",
]
