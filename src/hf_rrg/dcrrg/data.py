"""DCRRG's training instances (§3.1, §3.3).

Step 1 treats every (sample, observation) as an instance with its own label: `observation_instances` lists them,
uncertain ones left out, and with `balancing` re-samples each observation's minority class (positives or
negatives) with replacement up to its majority count (Table 5's "balancing"), drawn anew per epoch from
(seed, epoch). Samples are uni-modal: a `Sample` may have images only, a report only, or both (image-only and
text-only samples train their own encoder in the same run). Step 3's instances are (sample, observation,
description) for the observations the report describes, from the image and, as an augmented view, from the
report text (§3.3: "twice the data").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .observations import IGNORE, ObservationRecord, label_reports


@dataclass
class Sample:
    """One uni-modal or paired sample: `images` (a study's views: PIL images or anything `load_image` reads, e.g.
    `report_folder`'s undecoded cells) and/or `report`, and its labels."""

    images: list[Any] | None
    report: str | None
    record: ObservationRecord
    id: str = ""


@dataclass
class Instance:
    """(sample index, observation index, target): a step-1 label (0/1) or a step-3 description."""

    sample: int
    observation: int
    target: Any = None
    modality: str = "image"


@dataclass
class DCRRGSamples:
    """The samples of one split and helpers to turn them into instances and batches."""

    samples: list[Sample] = field(default_factory=list)

    @classmethod
    def from_dataset(
        cls, dataset: Any, observation_names: Sequence[str], use_images: bool = True, use_reports: bool = True,
        progress: bool = True,
    ) -> DCRRGSamples:
        """Samples from a `datasets.Dataset` with `images` / `report` (and `id`) columns; labels from the report."""
        reports = list(dataset["report"])
        records = label_reports(reports, observation_names, progress=progress)
        images = list(dataset["images"]) if use_images and "images" in dataset.column_names else [None] * len(reports)
        ids = [str(i) for i in dataset["id"]] if "id" in dataset.column_names else [str(i) for i in range(len(reports))]
        return cls([
            Sample(images=im or None, report=rep if use_reports else None, record=rec, id=i)
            for im, rep, rec, i in zip(images, reports, records, ids)
        ])  # fmt: skip

    def __len__(self) -> int:
        return len(self.samples)

    def extend(self, other: DCRRGSamples) -> DCRRGSamples:
        return DCRRGSamples(self.samples + other.samples)


def observation_instances(
    samples: DCRRGSamples, modality: str, balancing: bool = False, seed: int = 0, epoch: int = 0
) -> list[Instance]:
    """Step-1 instances of `modality` ("image" or "text"): every (sample, observation) with a label (uncertain
    excluded) of the samples that have that modality; with `balancing`, per-observation re-sampling of the minority
    class up to the majority count (with replacement, from (seed, epoch))."""
    has = (lambda s: s.images is not None) if modality == "image" else (lambda s: s.report is not None)
    rows = [i for i, s in enumerate(samples.samples) if has(s)]
    if not rows:
        return []
    num_observations = len(samples.samples[rows[0]].record.labels)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    instances: list[Instance] = []
    for k in range(num_observations):
        groups = {0: [], 1: []}
        for i in rows:
            label = samples.samples[i].record.labels[k]
            if label != IGNORE:
                groups[label].append(i)
        if balancing and groups[0] and groups[1]:
            target = max(len(groups[0]), len(groups[1]))
            for label, members in groups.items():
                extra = target - len(members)
                if extra > 0:
                    picks = torch.randint(len(members), (extra,), generator=generator).tolist()
                    groups[label] = members + [members[p] for p in picks]
        for label, members in groups.items():
            instances.extend(Instance(i, k, label, modality) for i in members)
    order = torch.randperm(len(instances), generator=generator).tolist()
    return [instances[i] for i in order]


def description_instances(samples: DCRRGSamples, use_text_view: bool = True) -> list[Instance]:
    """Step-3 instances: (sample, observation, description) from the image and, with `use_text_view`, from the
    report text too (§3.3)."""
    instances = []
    for i, sample in enumerate(samples.samples):
        for k, text in sorted(sample.record.descriptions.items()):
            if sample.images is not None:
                instances.append(Instance(i, k, text, "image"))
            if use_text_view and sample.report is not None:
                instances.append(Instance(i, k, text, "text"))
    return instances


def batches(items: Sequence[Any], size: int, shuffle: bool = False, seed: int = 0, epoch: int = 0) -> list[list[Any]]:
    """`items` cut into lists of `size` (shuffled by (seed, epoch) when asked)."""
    order = list(range(len(items)))
    if shuffle:
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed * 7919 + epoch)).tolist()
    return [[items[i] for i in order[start:start + size]] for start in range(0, len(order), size)]


__all__ = ["DCRRGSamples", "Instance", "Sample", "batches", "description_instances", "observation_instances"]
