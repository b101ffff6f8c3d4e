"""Evaluation protocols: how predictions and references are turned into the strings that are scored.

A protocol is explicit because it changes the numbers (see docs/metrics.md):

- ``default``: references are cleaned but never truncated. With a tokenizer, both sides are cleaned with
  the tokenizer's cleaner preset (no `<unk>` mapping); with `cleaner=`, with that preset; with neither,
  texts are scored exactly as given, as pycocoevalcap's scorers would score them (its ROUGE-L splits on single
  spaces, so a double space is an empty token; BLEU and CIDEr split on any whitespace). `evaluate_reports(..., ptb=True)` then applies pycocoevalcap's
  PTB tokenizer (Java) to the scored strings.
- ``r2gen``: what the R2Gen family (R2Gen, R2GenCMN, XProNet, ITHN) scores: cleaned, vocabulary-mapped
  strings (out-of-vocabulary words become the tokenizer's unk token), references cut to
  ``max_seq_length - 1`` tokens (their data loader keeps ``max_seq_length`` ids including the start token),
  no PTB tokenizer. Needs the model's tokenizer and `max_seq_length`.
- ``chinese``: character tokens (the ``chinese_char`` cleaner puts spaces between CJK characters; Latin and
  number runs stay whole); no truncation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROTOCOLS = ("default", "r2gen", "chinese")


def load_tokenizer(tokenizer: Any) -> Any:
    """An `RRGTokenizer` from an instance or a saved tokenizer directory."""
    if tokenizer is None or not isinstance(tokenizer, (str, Path)):
        return tokenizer
    from hf_rrg.modeling.tokenization_rrg import RRGTokenizer

    path = Path(tokenizer)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory {path} does not exist; pass the folder a tokenizer was saved to")
    return RRGTokenizer.from_pretrained(str(path))


def prepare_texts(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    protocol: str = "default",
    tokenizer: Any = None,
    max_seq_length: int | None = None,
    cleaner: str | None = None,
) -> tuple[list[str], list[list[str]]]:
    """Apply `protocol` to predictions and (lists of) references; returns the strings to score."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; choose one of {list(PROTOCOLS)}")
    if max_seq_length is not None and protocol != "r2gen":
        raise ValueError(
            f"max_seq_length={max_seq_length} only applies to protocol 'r2gen' (protocol {protocol!r} never "
            "truncates references)"
        )
    tokenizer = load_tokenizer(tokenizer)

    if protocol == "r2gen":
        if tokenizer is None:
            raise ValueError("protocol 'r2gen' scores vocabulary-mapped strings: pass the model's tokenizer")
        if max_seq_length is None or max_seq_length < 2:
            raise ValueError(
                f"protocol 'r2gen' needs max_seq_length >= 2 (the model's, e.g. 60 for IU X-Ray, 100 for "
                f"MIMIC-CXR); got {max_seq_length}"
            )
        preds = [tokenizer.normalize_report(text) for text in predictions]
        refs = [[tokenizer.normalize_report(text, max_tokens=max_seq_length - 1) for text in item] for item in references]
        return preds, refs

    from hf_rrg.modeling.report_cleaning import clean_report

    if protocol == "chinese":
        preset: str | None = "chinese_char"
    else:
        preset = cleaner if cleaner is not None else getattr(tokenizer, "cleaner", None)

    def clean(text: str) -> str:
        return clean_report(text, preset) if preset is not None else text

    preds = [clean(text) for text in predictions]
    refs = [[clean(text) for text in item] for item in references]
    return preds, refs
