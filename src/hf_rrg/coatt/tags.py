"""CoAtt's tag vocabulary (§4.1): the labels of the multi-label classifier (Eq. 1).

Sources:
- `mti`: IU X-Ray's MTI-extracted MeSH terms ("automatic" tags of the NLM XML reports, the builder's
  `mesh_automatic` column; the paper counts 572 unique tags). Tags are lowercased, so case variants
  ('Atelectasis' / 'atelectasis') are one tag; `lowercase=False` keeps them apart.
- `mesh`: the manually assigned MeSH terms (`mesh_major`), for comparison.
- `words`: the distinct words of the report cleaned with a preset (PEIR Gross: "the top 1,000 words" are the tags).

The vocabulary is built from the training split only, kept most-frequent-first up to `max_tags` (ties broken
alphabetically) among tags seen at least `min_count` times, and stored as JSON (`tags.json` in a run folder).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..modeling.report_cleaning import clean_report

TAG_SOURCES: dict[str, str] = {"mti": "mesh_automatic", "mesh": "mesh_major", "words": "report"}
TAG_FILE_FORMAT = "hf-rrg-coatt-tags-v1"


def example_tags(example: Mapping[str, Any], source: str, lowercase: bool = True, cleaner: str = "alphabetic") -> list[str]:
    """The distinct tags of one example (a dataset row) from `source`, in first-seen order."""
    column = _column(source)
    if column not in example:
        raise ValueError(f"tag source {source!r} reads the column {column!r}, which this example lacks ({sorted(example)})")
    if source == "words":
        tags = [word for word in clean_report(example[column], cleaner).split() if word != "."]
    else:
        tags = [" ".join(str(tag).split()) for tag in example[column] or []]
        tags = [tag.lower() if lowercase else tag for tag in tags if tag]
    return list(dict.fromkeys(tags))


def _column(source: str) -> str:
    try:
        return TAG_SOURCES[source]
    except KeyError:
        raise ValueError(f"unknown tag source {source!r}; choose one of {sorted(TAG_SOURCES)}") from None


@dataclass
class TagVocabulary:
    """The L tags of the MLC, in slot order, with how they were made and their training-split counts."""

    tags: list[str]
    source: str
    lowercase: bool = True
    cleaner: str = "alphabetic"
    min_count: int = 1
    max_tags: int | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tags:
            raise ValueError(f"the tag vocabulary (source {self.source!r}) is empty: the training split has no tags")
        self._index = {tag: i for i, tag in enumerate(self.tags)}

    def __len__(self) -> int:
        return len(self.tags)

    @property
    def column(self) -> str:
        """The dataset column the tags are read from."""
        return _column(self.source)

    def multi_hot(self, examples: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """(len(examples), L) float multi-hot ground truth l (§3.6); tags outside the vocabulary are ignored."""
        out = torch.zeros(len(examples), len(self.tags))
        for row, example in enumerate(examples):
            for tag in example_tags(example, self.source, self.lowercase, self.cleaner):
                index = self._index.get(tag)
                if index is not None:
                    out[row, index] = 1.0
        return out

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary as JSON (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": TAG_FILE_FORMAT, **asdict(self)}
        tmp = path.with_name(f".tmp_{path.name}")
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TagVocabulary:
        """Read a vocabulary written by `save`; clear errors for a missing or foreign file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tag vocabulary {path} does not exist; make it with `hf-rrg coatt tags`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"tag vocabulary {path} is not valid JSON ({error})") from None
        if not isinstance(data, dict) or data.pop("format", None) != TAG_FILE_FORMAT:
            raise ValueError(f"{path} is not a CoAtt tag vocabulary (expected format {TAG_FILE_FORMAT!r})")
        return cls(**data)


def build_tag_vocabulary(
    examples: Iterable[Mapping[str, Any]],
    source: str = "mti",
    *,
    min_count: int = 1,
    max_tags: int | None = None,
    lowercase: bool = True,
    cleaner: str = "alphabetic",
) -> TagVocabulary:
    """Count each tag once per example over `examples` (the training split) and keep the most frequent."""
    _column(source)
    if min_count < 1 or (max_tags is not None and max_tags < 1):
        raise ValueError(f"min_count must be >= 1 and max_tags >= 1 or None, got {min_count}, {max_tags}")
    counts: Counter[str] = Counter()
    for example in examples:
        counts.update(example_tags(example, source, lowercase, cleaner))
    kept = sorted((item for item in counts.items() if item[1] >= min_count), key=lambda item: (-item[1], item[0]))
    if max_tags is not None:
        kept = kept[:max_tags]
    return TagVocabulary(
        tags=[tag for tag, _ in kept], source=source, lowercase=lowercase, cleaner=cleaner,
        min_count=min_count, max_tags=max_tags, counts=dict(kept),
    )  # fmt: skip


class TagLookup:
    """Batch hook: items -> `{"tag_labels": (B, L)}` multi-hot from the vocabulary (picklable for workers)."""

    def __init__(self, vocabulary: TagVocabulary) -> None:
        self.vocabulary = vocabulary

    def __call__(self, items: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return {"tag_labels": self.vocabulary.multi_hot(items)}


__all__ = ["TAG_FILE_FORMAT", "TAG_SOURCES", "TagLookup", "TagVocabulary", "build_tag_vocabulary", "example_tags"]
