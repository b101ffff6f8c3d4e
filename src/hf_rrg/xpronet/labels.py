"""XProNet's pseudo-label files (§3.2 Eq. 3): one binary vector of N_l = 14 observations per sample.

The labeler is `hf_rrg.labeling.CheXpertLabeler` (the paper used CheXbert). Its values (1 positive, 0 negative,
-1 uncertain, None unmentioned) become binary slots by the config's policy: positive -> 1; uncertain -> 1 when
`uncertain_as_positive` (the official files' choice) else 0; negative and unmentioned -> 0; then a sample with no
1 gets its `no_positive_slot` ("No Finding") set, so every sample has at least one label.

Slot order: `XProNetConfig.observation_names`, by default CheXbert's order with "No Finding" LAST (the official
label files' order). `hf_rrg.labeling.OBSERVATIONS` has the same names in CheXpert's CSV order with "No Finding"
FIRST; slots are matched by name, never by position.

File format (JSON, UTF-8)::

    {
      "format": "hf-rrg/xpronet-labels/v1",
      "observation_names": ["Enlarged Cardiomediastinum", ..., "No Finding"],   # the slot order
      "policy": {"uncertain_as_positive": true, "no_positive_slot": "No Finding",
                 "labeler": "hf_rrg.labeling.CheXpertLabeler", "impression_only": false},
      "counts": {"train": {"Cardiomegaly": 12, ...}, ...},                    # positives per split and slot
      "splits": {"train": ["id1", ...], ...},                                   # which ids each split holds
      "labels": {"id1": [0, 1, 0, ..., 0], ...}                                 # N_l ints per sample id
    }
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..modeling.configuration_xpronet import XPRONET_OBSERVATIONS
from ..text_files import read_text

LABEL_FILE_FORMAT = "hf-rrg/xpronet-labels/v1"


def slot_labels(
    values: Mapping[str, int | None],
    observation_names: Sequence[str] = XPRONET_OBSERVATIONS,
    uncertain_as_positive: bool = True,
    no_positive_slot: str | None = "No Finding",
) -> list[int]:
    """One report's labeler values (observation name -> 1/0/-1/None) as binary slots in `observation_names` order."""
    missing = [name for name in observation_names if name not in values]
    if missing:
        raise ValueError(f"labeler values lack observations {missing}; got {sorted(values)}")
    positive = {1, -1} if uncertain_as_positive else {1}
    slots = [1 if values[name] in positive else 0 for name in observation_names]
    if no_positive_slot is not None and not any(slots):
        if no_positive_slot not in observation_names:
            raise ValueError(f"no_positive_slot {no_positive_slot!r} is not one of {list(observation_names)}")
        slots[list(observation_names).index(no_positive_slot)] = 1
    return slots


def class_counts(rows: Iterable[Sequence[int]], observation_names: Sequence[str]) -> dict[str, int]:
    """Positives per slot over label rows."""
    counts = dict.fromkeys(observation_names, 0)
    for row in rows:
        for name, value in zip(observation_names, row):
            counts[name] += int(value)
    return counts


@dataclass
class LabelFile:
    """The contents of a label file (see the module docstring for the JSON layout)."""

    observation_names: list[str]
    policy: dict[str, Any]
    labels: dict[str, list[int]]
    splits: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def tensor(self, ids: Sequence[str], observation_names: Sequence[str] | None = None) -> torch.Tensor:
        """(len(ids), N_l) float labels of `ids`, in `observation_names` order (default: the file's).

        Raises a ValueError naming the ids the file lacks, or the slots it does not have.
        """
        order = list(observation_names) if observation_names is not None else self.observation_names
        unknown = [name for name in order if name not in self.observation_names]
        if unknown:
            raise ValueError(f"label file has no slots {unknown}; its slots are {self.observation_names}")
        missing = [str(i) for i in ids if str(i) not in self.labels]
        if missing:
            raise ValueError(
                f"label file lacks {len(missing)} sample id(s), e.g. {missing[:5]}; remake it for this dataset "
                "with `hf-rrg xpronet labels`."
            )
        columns = [self.observation_names.index(name) for name in order]
        rows = [[self.labels[str(i)][c] for c in columns] for i in ids]
        return torch.tensor(rows, dtype=torch.float32).reshape(len(ids), len(order))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": LABEL_FILE_FORMAT,
            "observation_names": self.observation_names,
            "policy": self.policy,
            "counts": self.counts,
            "splits": self.splits,
            "labels": self.labels,
        }

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")
        tmp.replace(path)
        return path


def read_label_file(path: str | Path) -> LabelFile:
    """Read and check a label file written by `make_label_file` / `hf-rrg xpronet labels`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist; make it with `hf-rrg xpronet labels`.")
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"label file {path} is not valid JSON: {error}") from error
    if not isinstance(data, dict) or data.get("format") != LABEL_FILE_FORMAT:
        raise ValueError(f"{path} is not an XProNet label file (expected \"format\": \"{LABEL_FILE_FORMAT}\").")
    names = list(data["observation_names"])
    bad = [key for key, row in data["labels"].items() if len(row) != len(names) or set(row) - {0, 1}]
    if bad:
        raise ValueError(f"label file {path}: rows of ids {bad[:5]} are not {len(names)} binary values")
    return LabelFile(names, dict(data["policy"]), dict(data["labels"]), dict(data.get("splits", {})),
                     dict(data.get("counts", {})))  # fmt: skip


def make_label_file(
    dataset: Any,
    observation_names: Sequence[str] = XPRONET_OBSERVATIONS,
    uncertain_as_positive: bool = True,
    no_positive_slot: str | None = "No Finding",
    impression_only: bool = False,
    progress: bool = True,
) -> LabelFile:
    """Label every sample of a `load_builder` dataset (a `DatasetDict` or one `Dataset`, with `id` and `report`).

    Sample ids must be unique across splits. Returns the `LabelFile` (call `.write(path)` to save it).
    """
    from ..labeling import OBSERVATIONS, CheXpertLabeler

    unknown = [name for name in observation_names if name not in OBSERVATIONS]
    if unknown:
        raise ValueError(f"observation names {unknown} are not CheXpert observations {list(OBSERVATIONS)}")
    splits = dict(dataset.items()) if hasattr(dataset, "items") else {"all": dataset}
    labeler = CheXpertLabeler(impression_only=impression_only)
    labels: dict[str, list[int]] = {}
    split_ids: dict[str, list[str]] = {}
    counts: dict[str, dict[str, int]] = {}
    for split, data in splits.items():
        for column in ("id", "report"):
            if column not in data.column_names:
                raise ValueError(f"split {split!r} has no {column!r} column (columns: {data.column_names})")
        ids = [str(i) for i in data["id"]]
        reports = data["report"]
        rows = [
            slot_labels(result.values, observation_names, uncertain_as_positive, no_positive_slot)
            for result in labeler.label_batch(reports, progress=progress)
        ]
        for sample_id, row in zip(ids, rows):
            if sample_id in labels:
                raise ValueError(f"sample id {sample_id!r} occurs twice (split {split!r}); ids must be unique")
            labels[sample_id] = row
        split_ids[split] = ids
        counts[split] = class_counts(rows, observation_names)
    policy = {
        "uncertain_as_positive": uncertain_as_positive,
        "no_positive_slot": no_positive_slot,
        "labeler": "hf_rrg.labeling.CheXpertLabeler",
        "impression_only": impression_only,
    }
    return LabelFile(list(observation_names), policy, labels, split_ids, counts)


def format_counts(label_file: LabelFile) -> str:
    """A table of positives per slot (rows) and split (columns)."""
    splits = list(label_file.counts)
    width = max(len(n) for n in label_file.observation_names)
    lines = [" " * width + "".join(f"{s:>12}" for s in splits)]
    for name in label_file.observation_names:
        lines.append(f"{name:<{width}}" + "".join(f"{label_file.counts[s][name]:>12}" for s in splits))
    lines.append(f"{'samples':<{width}}" + "".join(f"{len(label_file.splits.get(s, [])):>12}" for s in splits))
    return "\n".join(lines)
