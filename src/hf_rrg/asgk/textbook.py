"""ASGK's "textbook" (external auxiliary signals, §3.3): plain medical text split into sentences, each with the tags
its text mentions, batched for pre-training the graph encoder and decoder.

A textbook is any plain-text corpus: `.txt` files or folders of them, or a `datasets` dataset with a `text` column.
For tests and the demo, hf-rrg uses a *stand-in*: the INDICATION and IMPRESSION sections of IU X-Ray studies that
are outside R2Gen's validation and test splits (`iu_xray_textbook`). It is real clinical text but not the medical
textbook the paper collected from a website; results pre-trained on it are not the paper's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .tags import iu_uid, match_tags

_ENGLISH_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n\s*\n|\n")
_CHINESE_END = re.compile(r"(?<=[。！？；!?;])|\n")
_XXXX = re.compile(r"\bx{2,}\b", re.IGNORECASE)


def split_textbook_sentences(text: str, language: str = "en", min_words: int = 2) -> list[str]:
    """Sentences of a text: after `.`/`!`/`?` followed by a capital, digit or quote, and at line breaks (English);
    after `。！？；` and line breaks (language "zh"). Sentences shorter than `min_words` words (English) or
    characters (Chinese) are dropped, as are IU X-Ray's de-identification marks (XXXX)."""
    if language not in ("en", "zh"):
        raise ValueError(f"textbook language must be en or zh, got {language!r}")
    pattern = _ENGLISH_END if language == "en" else _CHINESE_END
    sentences = []
    for part in pattern.split(text):
        part = " ".join(_XXXX.sub(" ", part or "").split())
        size = len(part.split()) if language == "en" else len(part.replace(" ", ""))
        if size >= min_words:
            sentences.append(part)
    return sentences


def read_textbook(paths: Iterable[str | Path], language: str = "en") -> list[str]:
    """Sentences of `.txt` files (a folder contributes its `.txt` files, recursively, sorted)."""
    sentences: list[str] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files = sorted(path.rglob("*.txt"))
            if not files:
                raise ValueError(f"textbook folder {path} holds no .txt file")
        elif path.is_file():
            files = [path]
        else:
            raise FileNotFoundError(f"textbook file {path} does not exist")
        for file in files:
            sentences.extend(split_textbook_sentences(file.read_text(encoding="utf-8"), language))
    return sentences


def dataset_textbook(dataset: Any, column: str = "text", language: str = "en") -> list[str]:
    """Sentences of a `datasets` dataset's text column (e.g. `load_dataset("text", data_files=...)["train"]`)."""
    if column not in dataset.column_names:
        raise ValueError(f"the textbook dataset has no {column!r} column (columns: {dataset.column_names})")
    return [s for text in dataset[column] for s in split_textbook_sentences(text or "", language)]


def iu_xray_textbook(data_dir: str | Path, annotation_file: str | Path | None = None) -> list[str]:
    """The stand-in textbook: INDICATION + IMPRESSION sentences of the IU X-Ray reports in
    `<data_dir>/NLMCXR_reports.tgz` whose study is *not* in R2Gen's validation or test split
    (`annotation_file`, default `<data_dir>/annotation.json` when present; without it, not in the nlm builder's
    hash-split validation/test)."""
    import json

    from ..data import load_builder

    data_dir = Path(data_dir)
    annotation = Path(annotation_file) if annotation_file else data_dir / "annotation.json"
    built = load_builder("iu_xray", data_dir=str(data_dir), name="nlm", images_required=False)
    excluded: set[int] = set()
    if annotation.is_file():
        data = json.loads(annotation.read_text(encoding="utf-8"))
        for split, entries in data.items():
            if split.strip() in ("val", "validation", "test", ""):  # "    " is the test key in some copies
                excluded.update(uid for uid in (iu_uid(e["id"]) for e in entries) if uid is not None)
        splits = list(built)
    else:
        splits = ["train"]
    sentences = []
    for split in splits:
        data = built[split]
        for uid, indication, impression in zip(data["uid"], data["indication"], data["impression"]):
            if int(uid) in excluded:
                continue
            for text in (indication, impression):
                sentences.extend(split_textbook_sentences(text or ""))
    return sentences


class TextbookSentences(Dataset):
    """Sentences with their tag targets (matched in their text, `hf_rrg.asgk.tags.match_tags`)."""

    def __init__(
        self, sentences: Sequence[str], tag_names: Sequence[str], tag_source: str, progress: bool = False
    ) -> None:
        from tqdm.auto import tqdm

        labeler = None
        if tag_source == "labeler":
            from ..labeling import CheXpertLabeler

            labeler = CheXpertLabeler()
        self.sentences = list(sentences)
        if not self.sentences:
            raise ValueError("the textbook has no sentence; give it text (recipe_options.textbook_*)")
        self.tags = [
            match_tags(s, tag_names, tag_source, labeler)
            for s in tqdm(self.sentences, desc="textbook tags", disable=not progress)
        ]

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"sentence": self.sentences[index], "tags": self.tags[index]}


class TextbookCollator:
    """Items -> `textbook_input_ids` / `textbook_attention_mask` (the GRU's input: `<bos> words <eos>`, cut to
    `max_length`), the decoder's shifted `decoder_input_ids` / `decoder_attention_mask` / `labels` (the same
    sentence, Eq. 5) and `tag_labels`."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        from ..data.collators import shifted_targets

        sentences = [item["sentence"] for item in items]
        batch = shifted_targets(self.tokenizer, sentences, self.max_length)
        encoded = self.tokenizer(sentences, padding=True, return_tensors="pt")
        batch["textbook_input_ids"] = encoded["input_ids"][:, : self.max_length]
        batch["textbook_attention_mask"] = encoded["attention_mask"][:, : self.max_length]
        batch["tag_labels"] = torch.tensor([item["tags"] for item in items], dtype=torch.float32)
        return batch


__all__ = [
    "TextbookCollator",
    "TextbookSentences",
    "dataset_textbook",
    "iu_xray_textbook",
    "read_textbook",
    "split_textbook_sentences",
]
