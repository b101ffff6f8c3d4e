"""Prior hard negatives (ITHN §3.2): every training report's nearest neighbours among the other training reports.

Reports are embedded with a text encoder (the paper: RadBERT; here any Hugging Face encoder id or local folder,
pooled by `mean` over the real tokens or by the first (`cls`) token, or `encoder="tfidf"`, a TF-IDF bag of words
that needs no model), l2-normalised, and searched exactly (`exact_search.nearest_neighbours`: the cosine matrix
product in square tiles of `block_size` rows, half of it by symmetry, with a running top-k per row), excluding the
report itself and, optionally, the reports of the same patient or with the same text. The result is a neighbours file:

    {"metadata": {"encoder": ..., "pooling": ..., "top_k": ..., ...},
     "neighbours": {"<id>": [["<neighbour id>", cosine], ...], ...}}

with each list sorted by decreasing similarity. The images of a report's neighbour are its hard-negative images.
Timing (docs/ithn.md, benchmarks/bench_ithn_mining.py): exact search is O(n²·d / 2) and memory O(n·d + block_size²);
MIMIC-CXR's 270k reports at d = 768 are ~2.8·10^13 multiply-adds, seconds on a GPU and tens of minutes on CPU
cores, so no approximate index is needed.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .exact_search import nearest_neighbours

TFIDF = "tfidf"
POOLINGS = ("mean", "cls")
FILE_FORMAT = "hf-rrg-ithn-neighbours"
_WORD = re.compile(r"[a-z]+")


# ------------------------------------------------------------------------------------------------ embeddings


def tfidf_embeddings(
    reports: Sequence[str], min_df: int = 2, max_features: int | None = 4096, sublinear_tf: bool = True
) -> torch.Tensor:
    """(n, V) l2-normalised TF-IDF vectors of lower-cased alphabetic words: tf = 1 + log(count) (`sublinear_tf`)
    or the count, idf = log((1 + n) / (1 + df)) + 1; the vocabulary is the words in >= `min_df` reports, the
    `max_features` most frequent of them (dense output: keep it small for large corpora)."""
    documents = [Counter(_WORD.findall(str(report).lower())) for report in reports]
    frequency = Counter(word for document in documents for word in document)
    words = sorted((w for w, df in frequency.items() if df >= min_df), key=lambda w: (-frequency[w], w))
    if max_features is not None:
        words = words[:max_features]
    if not words:
        raise ValueError(f"no word occurs in >= {min_df} of the {len(reports)} reports; lower min_df")
    index = {word: i for i, word in enumerate(words)}
    total = len(documents)
    idf = torch.tensor([math.log((1 + total) / (1 + frequency[w])) + 1 for w in words])
    matrix = torch.zeros(total, len(words))
    for row, document in enumerate(documents):
        for word, count in document.items():
            column = index.get(word)
            if column is not None:
                matrix[row, column] = 1 + math.log(count) if sublinear_tf else count
    return F.normalize(matrix * idf, dim=1)


def encoder_embeddings(
    reports: Sequence[str],
    encoder: str | Path,
    pooling: str = "mean",
    batch_size: int = 64,
    max_length: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> torch.Tensor:
    """(n, hidden) l2-normalised report features from a Hugging Face encoder (`AutoModel` + `AutoTokenizer` of an
    id or local folder), pooled by `mean` or `cls`. Reports are batched by length (less padding), order kept."""
    from ..xpronet.prototypes import text_features

    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    order = sorted(range(len(reports)), key=lambda i: len(str(reports[i])))
    features = text_features([str(reports[i]) for i in order], encoder, pooling, batch_size, max_length, device,
                             progress)  # fmt: skip
    result = torch.empty_like(features)
    result[torch.tensor(order)] = features
    return F.normalize(result, dim=1)


def embed_reports(
    reports: Sequence[str],
    encoder: str | Path = TFIDF,
    pooling: str = "mean",
    batch_size: int = 64,
    max_length: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> torch.Tensor:
    """l2-normalised report embeddings (n, d): `encoder="tfidf"` or a Hugging Face encoder id / local folder."""
    if str(encoder) == TFIDF:
        return tfidf_embeddings(reports)
    return encoder_embeddings(reports, encoder, pooling, batch_size, max_length, device, progress)


# ---------------------------------------------------------------------------------------------------- the file


@dataclass
class NeighbourFile:
    """Each training id's neighbours `[(neighbour id, cosine), ...]` (most similar first) and how they were mined."""

    neighbours: dict[str, list[tuple[str, float]]]
    metadata: dict[str, Any] = field(default_factory=dict)

    def write(self, path: str | Path) -> Path:
        """Write the JSON file atomically; returns its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FILE_FORMAT,
            "metadata": self.metadata,
            "neighbours": {key: [[n, round(float(s), 6)] for n, s in value] for key, value in self.neighbours.items()},
        }
        tmp = path.with_name(f".tmp_{path.name}")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def check_covers(self, ids: Sequence[str], source: str | Path = "the neighbours file") -> None:
        """Every id has at least one neighbour, and every neighbour is one of `ids` (the split it was mined on)."""
        known = set(map(str, ids))
        missing = [i for i in map(str, ids) if not self.neighbours.get(i)]
        if missing:
            raise ValueError(
                f"{source} has no neighbours for {len(missing)} of the {len(known)} training ids (e.g. {missing[:3]}); "
                "mine it for this training split (`hf-rrg ithn mine` or the recipe's mine stage)"
            )
        foreign = sorted({n for i in known for n, _ in self.neighbours[i] if n not in known})
        if foreign:
            raise ValueError(
                f"{source} names {len(foreign)} neighbours outside the training split (e.g. {foreign[:3]}); the "
                "hard negatives must be training studies: mine the file on this training split"
            )


def read_neighbour_file(path: str | Path) -> NeighbourFile:
    """Read a neighbours file, with errors naming the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"neighbours file {path} does not exist; make it with `hf-rrg ithn mine`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"neighbours file {path} is not valid JSON ({error}); mine it again") from None
    if not isinstance(data, dict) or not isinstance(data.get("neighbours"), dict):
        raise ValueError(f"{path} is not an ITHN neighbours file (expected a 'neighbours' mapping of id -> list)")
    neighbours: dict[str, list[tuple[str, float]]] = {}
    for key, value in data["neighbours"].items():
        try:
            neighbours[str(key)] = [(str(n), float(s)) for n, s in value]
        except (TypeError, ValueError):
            raise ValueError(f"{path}: entry {key!r} must be a list of [neighbour_id, score] pairs") from None
    return NeighbourFile(neighbours, dict(data.get("metadata") or {}))


def mine_hard_negatives(
    ids: Sequence[Any],
    reports: Sequence[str],
    *,
    encoder: str | Path = TFIDF,
    pooling: str = "mean",
    top_k: int = 10,
    patient_ids: Sequence[Any] | None = None,
    exclude_identical: bool = False,
    batch_size: int = 64,
    max_length: int = 256,
    block_size: int = 4096,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> NeighbourFile:
    """Embed `reports` and find each one's `top_k` nearest neighbours (§3.2).

    Args:
        ids: one unique id per report (the dataset's `id` column).
        encoder: "tfidf" or a Hugging Face encoder id / local folder (the paper: RadBERT).
        pooling: "mean" or "cls" (encoders only; recorded in the metadata).
        patient_ids: when given, reports of the same patient are never neighbours (other studies of one patient
            are not the hard negatives the paper means: they can describe the same findings).
        exclude_identical: also exclude reports whose text is identical (after lower-casing and collapsing
            whitespace). The paper does not (its nearest neighbour of a common normal report is an identical one).
    """
    ids = [str(i) for i in ids]
    if len(ids) != len(reports):
        raise ValueError(f"{len(ids)} ids for {len(reports)} reports")
    if len(set(ids)) != len(ids):
        duplicates = [i for i, c in Counter(ids).items() if c > 1]
        raise ValueError(f"ids must be unique; repeated: {duplicates[:5]}")
    started = time.perf_counter()
    embeddings = embed_reports(reports, encoder, pooling, batch_size, max_length, device, progress)
    embedded = time.perf_counter()
    groups: list[Any] | None = None
    if patient_ids is not None or exclude_identical:
        texts = [" ".join(str(r).lower().split()) for r in reports]
        if patient_ids is not None and len(patient_ids) != len(ids):
            raise ValueError(f"{len(patient_ids)} patient ids for {len(ids)} reports")
        groups = list(range(len(ids)))
        if patient_ids is not None:
            groups = [("patient", str(p)) for p in patient_ids]
        if exclude_identical:  # union of the two exclusions: merge groups sharing a patient or a text
            groups = _merge_groups(groups, texts)
    scores, indices = nearest_neighbours(embeddings, top_k, groups, block_size, device, progress)
    searched = time.perf_counter()
    neighbours = {
        ids[row]: [(ids[j], float(s)) for j, s in zip(indices[row].tolist(), scores[row].tolist()) if j >= 0]
        for row in range(len(ids))
    }
    metadata = {
        "encoder": str(encoder),
        "pooling": pooling if str(encoder) != TFIDF else None,
        "top_k": int(scores.size(1)),
        "reports": len(ids),
        "embedding_dim": int(embeddings.size(1)),
        "exclude_same_patient": patient_ids is not None,
        "exclude_identical": exclude_identical,
        "max_length": max_length if str(encoder) != TFIDF else None,
        "similarity": "cosine",
        "search": f"exact, blocks of {block_size} rows",
        "seconds_embedding": round(embedded - started, 3),
        "seconds_search": round(searched - embedded, 3),
    }
    return NeighbourFile(neighbours, metadata)


def _merge_groups(groups: list[Any], texts: list[str]) -> list[int]:
    """Union-find over rows: rows sharing a group key or a text end up in one group."""
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for keys in (groups, texts):
        first: dict[Any, int] = {}
        for row, key in enumerate(keys):
            other = first.setdefault(key, row)
            parent[find(row)] = find(other)
    return [find(i) for i in range(len(texts))]


__all__ = [
    "FILE_FORMAT",
    "NeighbourFile",
    "POOLINGS",
    "TFIDF",
    "embed_reports",
    "encoder_embeddings",
    "mine_hard_negatives",
    "nearest_neighbours",
    "read_neighbour_file",
    "tfidf_embeddings",
]
