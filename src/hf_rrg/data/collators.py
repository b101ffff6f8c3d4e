"""Batching for report generation: studies + reports -> `pixel_values`, `view_mask` and shifted token targets.

Training labels follow R2Gen's shift: from the tokenizer's `[<bos> w1 .. wn <eos> <pad> ..]` the decoder reads
`input_ids[:, :-1]` and predicts `input_ids[:, 1:]`, with padding replaced by -100 (ignored by the loss).
The training transform's randomness is drawn from a generator seeded by (seed, epoch, example index), so a batch
is the same whichever process, worker or resumed run makes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


class IndexedStudies(Dataset):
    """A `datasets.Dataset` (or list of dicts) seen as `{"index", "images", "report"}` items.

    Args:
        dataset: rows with an `images` list (PIL images or anything `RRGImageProcessor` loads) and a `report`.
        image_column / report_column: the column names.
        extra_columns: further columns every item carries under their own names (e.g. `id`, for a collator's
            `extra_fields` hook that looks samples up by id).
    """

    def __init__(
        self,
        dataset: Any,
        image_column: str = "images",
        report_column: str = "report",
        extra_columns: Sequence[str] = (),
    ) -> None:
        self.extra_columns = tuple(name for name in extra_columns if name not in (image_column, report_column))
        columns = getattr(dataset, "column_names", None)
        if columns is not None:
            missing = [name for name in (image_column, report_column, *self.extra_columns) if name not in columns]
            if missing:
                raise ValueError(
                    f"the dataset has no column(s) {missing}; its columns are {columns}. Pass image_column= / "
                    "report_column= to name them, or add the column(s) the recipe needs."
                )
            dataset = dataset.select_columns([image_column, report_column, *self.extra_columns])
        self.dataset = dataset
        self.image_column = image_column
        self.report_column = report_column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.dataset[int(index)]
        images = row[self.image_column]
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        item = {"index": int(index), "images": images, "report": row[self.report_column]}
        for name in self.extra_columns:
            item[name] = row[name]
        return item


def sample_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The augmentation generator of one example in one epoch (independent of batch, worker and process)."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


class ReportGenerationCollator:
    """Collate `IndexedStudies` items into model inputs.

    Args:
        image_processor: an `RRGImageProcessor`.
        tokenizer: an `RRGTokenizer` (or None for image-only batches, e.g. generation).
        max_length: keep the first `max_length` ids of `<bos> w1 .. wn <eos>` (the model's max_seq_length), as
            R2Gen does: a long report loses its `<eos>` and the model learns `max_length - 1` words of it.
        augment: use the training transform (random crop + flip), seeded per (seed, epoch, index).
        seed: base seed of the augmentation; set `collator.epoch` before each epoch.
        extra_fields: a hook `(items) -> {name: tensor}` whose tensors are added to every batch (a method's own
            model inputs, e.g. XProNet's `observation_labels` looked up by the items' `id`). It must be picklable
            for DataLoader workers (a module-level class or function, not a lambda).
        include_index: add the examples' `index` (hf-rrg's engine gathers generations by it). False for
            `transformers.Trainer` / `Seq2SeqTrainer`, which pass every batch key to the model and `generate`.

    Returns batches with `index` (long, unless `include_index=False`), `pixel_values` (B, V, 3, H, W), `view_mask`
    (B, V), with a tokenizer `decoder_input_ids`, `decoder_attention_mask` and `labels` (-100 on padding), and the
    `extra_fields`.
    """

    def __init__(
        self,
        image_processor: Any,
        tokenizer: Any = None,
        max_length: int | None = None,
        augment: bool = False,
        seed: int = 0,
        extra_fields: Callable[[Sequence[dict]], Mapping[str, torch.Tensor]] | None = None,
        include_index: bool = True,
    ) -> None:
        self.image_processor = image_processor
        self.include_index = include_index
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.augment = augment
        self.seed = seed
        self.extra_fields = extra_fields
        self.epoch = 0

    def _pixels(self, examples: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        studies = [example["images"] for example in examples]
        if not self.augment:
            out = self.image_processor(studies, augment=False, return_tensors="pt")
            return out["pixel_values"], out["view_mask"]
        parts = [
            self.image_processor(
                [study],
                augment=True,
                generator=sample_generator(self.seed, self.epoch, example["index"]),
                return_tensors="pt",
            )
            for study, example in zip(studies, examples)
        ]
        views = max(part["pixel_values"].shape[1] for part in parts)
        pixel_values = torch.zeros((len(parts), views, *parts[0]["pixel_values"].shape[2:]))
        view_mask = torch.zeros((len(parts), views), dtype=torch.bool)
        for i, part in enumerate(parts):
            n = part["pixel_values"].shape[1]
            pixel_values[i, :n] = part["pixel_values"][0]
            view_mask[i, :n] = part["view_mask"][0]
        return pixel_values, view_mask

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        pixel_values, view_mask = self._pixels(examples)
        batch = {"pixel_values": pixel_values, "view_mask": view_mask}
        if self.include_index:
            batch["index"] = torch.tensor([int(example["index"]) for example in examples], dtype=torch.long)
        if self.tokenizer is not None:
            batch.update(shifted_targets(self.tokenizer, [example["report"] for example in examples], self.max_length))
        if self.extra_fields is not None:
            extra = dict(self.extra_fields(examples))
            clash = sorted(set(extra) & set(batch))
            if clash:
                raise ValueError(f"extra_fields returned {clash}, which the collator already sets; rename them")
            batch.update(extra)
        return batch


def shifted_targets(tokenizer: Any, reports: Sequence[str], max_length: int | None) -> dict[str, torch.Tensor]:
    """`decoder_input_ids`, `decoder_attention_mask` and `labels` (R2Gen's shift, -100 on padding).

    Truncation follows R2Gen (`ids[:max_seq_length]` of `<bos> .. <eos>`), not the tokenizer's (which would keep
    `<eos>` and drop one more word): the model then learns exactly the `max_length - 1` tokens that the `r2gen`
    evaluation protocol scores.
    """
    encoded = tokenizer(list(reports), padding=True, return_tensors="pt")
    input_ids, attention_mask = encoded["input_ids"][:, :max_length], encoded["attention_mask"][:, :max_length]
    if input_ids.shape[1] < 2:
        raise ValueError("every report needs at least <bos> and <eos>; the tokenizer returned shorter sequences")
    labels = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
    return {
        "decoder_input_ids": input_ids[:, :-1].contiguous(),
        "decoder_attention_mask": attention_mask[:, :-1].contiguous(),
        "labels": labels.contiguous(),
    }


__all__ = ["IndexedStudies", "ReportGenerationCollator", "sample_generator", "shifted_targets"]
