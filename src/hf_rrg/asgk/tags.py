"""ASGK's medical tags: where the N tags and each study's targets come from, and the tag file that records them.

Sources (`recipe_options.tag_source`):
- `labeler` (default): hf-rrg's CheXpert labeler on each report; every observation gives two tags, "X: present"
  (positive, and uncertain when `uncertain_as_present`) and "X: absent" (negative). 14 x 2 = 28 tags, the normal
  and abnormal terminologies the paper asks for (§3.2) made without manual annotation.
- `mesh`: IU X-Ray's MeSH tags from the original NLM archive (major + automatic), reduced to their head term
  ("Opacity/lung/base/left" -> "opacity"), kept when at least `min_frequency` train studies carry them. Studies are
  matched by their IU uid (the number after `CXR` in the id).
- `column`: a dataset column listing each study's tags (COV-CTR's `terminologies`), terms carried by at least
  `min_frequency` train studies.
- `file`: a JSON file a person gives: `{"tag_names": [...], "labels": {"<study id>": ["tag", ...] or [0, 1, ...]}}`.

The tag file written in the run folder (`tags.json`, format `hf-rrg/asgk-tags/v1`) holds the tag names, a binary
row per study id (all splits: validation/test rows are only used to score tag AUC, never fed to the model) and how
it was made.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..modeling.configuration_asgk import ABSENT_SUFFIX, ASGK_LABELER_OBSERVATIONS, ASGK_LABELER_TAGS, PRESENT_SUFFIX

TAG_FILE_FORMAT = "hf-rrg/asgk-tags/v1"
TAG_SOURCES = ("labeler", "mesh", "file", "column")
_UID = re.compile(r"CXR(\d+)", re.IGNORECASE)


@dataclass
class TagFile:
    """Tag names, a binary row per study id, and how they were made."""

    tag_names: list[str]
    labels: dict[str, list[int]]
    source: str = "file"
    settings: dict[str, Any] = field(default_factory=dict)

    def tensor(self, ids: Iterable[Any]) -> torch.Tensor:
        """(len(ids), N) float targets of the given study ids; an unknown id is an error naming it."""
        ids = [str(i) for i in ids]
        missing = [i for i in ids if i not in self.labels]
        if missing:
            raise ValueError(
                f"the tag file has no row for {len(missing)} study id(s) (e.g. {missing[:3]}); make it for this "
                "dataset (the recipe's tags stage or `hf-rrg asgk tags`)"
            )
        return torch.tensor([self.labels[i] for i in ids], dtype=torch.float32)

    @property
    def counts(self) -> dict[str, int]:
        """Studies carrying each tag."""
        return {name: sum(row[k] for row in self.labels.values()) for k, name in enumerate(self.tag_names)}

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": TAG_FILE_FORMAT, "source": self.source, "settings": self.settings,
                "tag_names": self.tag_names, "counts": self.counts, "labels": self.labels}  # fmt: skip
        tmp = path.with_name(f".tmp_{path.name}")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(path)
        return path


def read_tag_file(path: str | Path) -> TagFile:
    """Read a `tags.json` written by `TagFile.write`, or a person's tag file (`tag_names` + `labels`, where a
    study's labels are a 0/1 row or a list of tag names)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tag file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"tag file {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or "tag_names" not in data or "labels" not in data:
        raise ValueError(
            f"tag file {path} must be a JSON object with 'tag_names' (a list) and 'labels' ({{study id: tag names or "
            "a 0/1 row}})"
        )
    names = [str(n) for n in data["tag_names"]]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"tag file {path}: tag_names must be distinct and non-empty")
    index = {name: k for k, name in enumerate(names)}
    labels: dict[str, list[int]] = {}
    for study, value in data["labels"].items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):  # tag names ([] = no tag)
            unknown = [v for v in value if v not in index]
            if unknown:
                raise ValueError(f"tag file {path}: study {study!r} has tags {unknown} that are not in tag_names")
            row = [0] * len(names)
            for v in value:
                row[index[v]] = 1
        else:
            if len(value) != len(names) or any(v not in (0, 1) for v in value):
                raise ValueError(
                    f"tag file {path}: study {study!r} must list tag names or a 0/1 row of {len(names)} values"
                )
            row = [int(v) for v in value]
        labels[str(study)] = row
    return TagFile(names, labels, data.get("source", "file"), data.get("settings", {}))


# ------------------------------------------------------------------------------------------------ labeler


def labeler_tag_row(values: Mapping[str, int | None], uncertain_as_present: bool = True) -> list[int]:
    """The 28 labeler tags of one report from its observation values (1, 0, -1, None), in `ASGK_LABELER_TAGS`
    order: "X: present" for positive (and uncertain when `uncertain_as_present`), "X: absent" for negative."""
    row = []
    for name in ASGK_LABELER_OBSERVATIONS:
        value = values.get(name)
        row.append(int(value == 1 or (value == -1 and uncertain_as_present)))
        row.append(int(value == 0))
    return row


def labeler_tags(
    splits: Mapping[str, Any], uncertain_as_present: bool = True, progress: bool = False
) -> TagFile:
    """Tag file of every study (`id`, `report` columns) of `splits` from the CheXpert labeler."""
    from ..labeling import CheXpertLabeler

    labeler = CheXpertLabeler()
    labels: dict[str, list[int]] = {}
    for data in splits.values():
        ids, reports = [str(i) for i in data["id"]], list(data["report"])
        for study, result in zip(ids, labeler.label_batch(reports, progress=progress)):
            labels[study] = labeler_tag_row(result.values, uncertain_as_present)
    return TagFile(list(ASGK_LABELER_TAGS), labels, "labeler", {"uncertain_as_present": uncertain_as_present})


# ------------------------------------------------------------------------------------------------ MeSH


def mesh_head_terms(terms: Iterable[str]) -> list[str]:
    """MeSH entries reduced to their head term, lower-cased, without duplicates ("Opacity/lung/base" -> "opacity";
    "No Indexing" is dropped)."""
    heads: list[str] = []
    for term in terms:
        head = " ".join(term.split("/")[0].split()).lower()
        if head and head != "no indexing" and head not in heads:
            heads.append(head)
    return heads


def iu_uid(study_id: Any) -> int | None:
    """The IU X-Ray uid of a study id (`CXR123_IM-...` -> 123), or None."""
    match = _UID.search(str(study_id))
    return int(match.group(1)) if match else None


def read_mesh_terms(data_dir: str | Path) -> tuple[dict[int, list[str]], dict[int, str]]:
    """({uid: head terms}, {uid: nlm split}) of every IU X-Ray report in `<data_dir>/NLMCXR_reports.tgz`."""
    from ..data import load_builder

    built = load_builder("iu_xray", data_dir=str(data_dir), name="nlm", images_required=False)
    terms, split_of = {}, {}
    for split, data in built.items():
        for uid, major, automatic in zip(data["uid"], data["mesh_major"], data["mesh_automatic"]):
            terms[int(uid)] = mesh_head_terms([*major, *automatic])
            split_of[int(uid)] = split
    return terms, split_of


def mesh_tags(
    splits: Mapping[str, Any], data_dir: str | Path, min_frequency: int = 25, train_split: str = "train"
) -> TagFile:
    """Tag file of the studies of `splits` (ids carrying an IU uid) from IU X-Ray's MeSH tags; the vocabulary is
    every head term carried by at least `min_frequency` studies of `splits[train_split]`, most frequent first."""
    terms, _ = read_mesh_terms(data_dir)
    rows: dict[str, list[str]] = {}
    for data in splits.values():
        for study in data["id"]:
            uid = iu_uid(study)
            if uid is None or uid not in terms:
                raise ValueError(
                    f"study {study!r} has no IU X-Ray report with MeSH tags in {data_dir}; the mesh tag source works "
                    "for IU X-Ray studies only (use tag_source labeler or file for other data)"
                )
            rows[str(study)] = terms[uid]
    train_ids = [str(i) for i in splits[train_split]["id"]]
    counts = Counter(term for study in train_ids for term in rows[study])
    names = [term for term, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if count >= min_frequency]
    if not names:
        raise ValueError(
            f"no MeSH term is carried by {min_frequency} or more of the {len(train_ids)} train studies; lower "
            "min_frequency"
        )
    index = {name: k for k, name in enumerate(names)}
    labels = {}
    for study, study_terms in rows.items():
        row = [0] * len(names)
        for term in study_terms:
            if term in index:
                row[index[term]] = 1
        labels[study] = row
    return TagFile(names, labels, "mesh", {"min_frequency": min_frequency, "data_dir": str(data_dir)})


def column_tags(
    splits: Mapping[str, Any], column: str, min_frequency: int = 1, train_split: str = "train"
) -> TagFile:
    """Tag file from a dataset column holding each study's tag list (e.g. COV-CTR's `terminologies`); the tags are
    the terms of at least `min_frequency` train studies, most frequent first."""
    rows: dict[str, list[str]] = {}
    for role, data in splits.items():
        if column not in data.column_names:
            raise ValueError(f"the {role} split has no column {column!r} (columns: {data.column_names})")
        for study, terms in zip(data["id"], data[column]):
            rows[str(study)] = [terms] if isinstance(terms, str) else list(terms or [])
    counts = Counter(t for study in splits[train_split]["id"] for t in set(rows[str(study)]))
    names = [t for t, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_frequency]
    if not names:
        raise ValueError(f"no tag in column {column!r} is carried by {min_frequency} or more train studies")
    labels = {study: [int(name in terms) for name in names] for study, terms in rows.items()}
    return TagFile(names, labels, "column", {"column": column, "min_frequency": min_frequency})


# ------------------------------------------------------------------------------------------------ sentences


def match_tags(sentence: str, tag_names: Sequence[str], source: str, labeler: Any = None) -> list[int]:
    """Tag targets of a textbook sentence (§3.3): the labeler's tags for the `labeler` source (pass a
    `CheXpertLabeler`), else every tag whose name occurs in the sentence (case-insensitive, on word boundaries for
    Latin text; anywhere for Chinese)."""
    if source == "labeler" and list(tag_names) == list(ASGK_LABELER_TAGS):
        if labeler is None:
            from ..labeling import CheXpertLabeler

            labeler = CheXpertLabeler()
        return labeler_tag_row(labeler.label(sentence).values)
    text = sentence.lower()
    row = []
    for name in tag_names:
        term = name.lower()
        if term.endswith(PRESENT_SUFFIX) or term.endswith(ABSENT_SUFFIX):
            term = term.rsplit(":", 1)[0]
        if re.search(r"[a-z0-9]", term):
            row.append(int(re.search(rf"(?<![a-z0-9]){re.escape(term)}(?![a-z0-9])", text) is not None))
        else:
            row.append(int(term in text))
    return row


__all__ = [
    "TAG_FILE_FORMAT",
    "TAG_SOURCES",
    "TagFile",
    "column_tags",
    "iu_uid",
    "labeler_tag_row",
    "labeler_tags",
    "match_tags",
    "mesh_head_terms",
    "mesh_tags",
    "read_mesh_terms",
    "read_tag_file",
]
