"""Report cleaners: named, versioned presets that turn a raw report into space-separated tokens.

The tokenizer applies its preset before splitting on whitespace, and stores the preset's name and version in
`tokenizer_config.json`, so a checkpoint always cleans text the way it was trained.

Presets:
- `r2gen_iu_xray`, `r2gen_mimic_cxr`: R2Gen's cleaning (Chen et al., EMNLP 2020, `modules/tokenizers.py` of the
  official code), reproduced *exactly*, quirks included, because every published IU X-Ray / MIMIC-CXR number in
  R2Gen, R2GenCMN, XProNet and ITHN was computed on its output.
- `basic`: a clean, documented cleaner without those quirks, for new datasets.
- `alphabetic`: `basic`, then only alphabetic words are kept (CoAtt §4.1: "dropping ... non-alphabetic tokens").
- `chinese_char`: character-level tokens for Chinese reports (CX-CHR, COV-CTR); Latin/number runs stay whole.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

# R2Gen's sentence filter. In the original pattern `:-\[` is a *range* from ':' (0x3A) to '[' (0x5B), so
# ': ; < = > ? @', the capitals and '[' are removed too, while '-', '#', digits and '$' are kept.
_R2GEN_SENTENCE_CHARS = re.compile(r"[.,?;*!%^&_+():-\[\]{}]")


def _replace_repeatedly(text: str, old: str, new: str, passes: int) -> str:
    """`str.replace` applied `passes` times, as R2Gen chains it (so e.g. '....' is not fully collapsed by 1 pass)."""
    for _ in range(passes):
        text = text.replace(old, new)
    return text


def _r2gen_clean(text: str, dot_passes: int) -> str:
    """R2Gen's shared report + sentence cleaning after its dataset-specific pre-pass."""
    text = _replace_repeatedly(text, "..", ".", dot_passes)
    # Enumeration removal, in R2Gen's order: every literal '1. ' goes (so 'at 11. Left' -> 'at 1Left').
    text = text.replace("1. ", "")
    for number in "2345":
        text = text.replace(f". {number}. ", ". ")
    for number in "2345":
        text = text.replace(f" {number}. ", ". ")
    sentences = text.strip().lower().split(". ")
    cleaned = []
    for sentence in sentences:
        for char in ('"', "/", "\\", "'"):
            sentence = sentence.replace(char, "")
        cleaned.append(_R2GEN_SENTENCE_CHARS.sub("", sentence.strip().lower()))
    # R2Gen's emptiness test compares a str with [] and never fires: empty sentences are kept ('. .').
    return " . ".join(cleaned) + " ."


def clean_r2gen_iu_xray(text: str) -> str:
    """R2Gen's IU X-Ray cleaner: '..' -> '.' (3 passes), enumeration removal, per-sentence character filter."""
    return _r2gen_clean(text, dot_passes=3)


def clean_r2gen_mimic_cxr(text: str) -> str:
    """R2Gen's MIMIC-CXR cleaner: newlines to spaces, '__' -> '_' (7 passes), '  ' -> ' ' (6 passes), then as IU
    with 8 passes of '..' -> '.'."""
    text = text.replace("\n", " ")
    text = _replace_repeatedly(text, "__", "_", 7)
    text = _replace_repeatedly(text, "  ", " ", 6)
    return _r2gen_clean(text, dot_passes=8)


_LIST_MARKER = re.compile(r"^\s*(?:\d{1,2}\)\s+|\d{1,2}\s*$)")
_SENTENCE_END = re.compile(r"[.?!;](?=\s|$)|\n")
_WORD = re.compile(r"[a-z0-9]+(?:[.'\-][a-z0-9]+)*")


def clean_basic(text: str) -> str:
    """A quirk-free English cleaner.

    NFKC-normalise and lowercase; split sentences at '.', '?', '!', ';' followed by a space or the end, and at
    newlines; drop list markers ('1.', '2)') that open a sentence; keep words made of letters and digits with internal '.',
    '-' or "'" ('1.5', 'x-ray', "patient's"); drop other punctuation and empty sentences; join sentences with
    ' . ' and end with ' .' (the same shape as R2Gen's output, so '.' is a token). An empty report gives ''.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    parts = (_LIST_MARKER.sub("", part) for part in _SENTENCE_END.split(text))
    sentences = [" ".join(_WORD.findall(part)) for part in parts]
    sentences = [sentence for sentence in sentences if sentence]
    return " . ".join(sentences) + " ." if sentences else ""


def clean_alphabetic(text: str) -> str:
    """`clean_basic`, then words with any non-letter character ('1.5', 'x-ray', "patient's", 't12') are dropped,
    as CoAtt preprocesses IU X-Ray (§4.1); sentences left without a word are dropped too."""
    sentences = [" ".join(w for w in part.split() if w.isalpha()) for part in clean_basic(text).split(" .")]
    sentences = [sentence for sentence in sentences if sentence]
    return " . ".join(sentences) + " ." if sentences else ""


_LATIN_RUN_OR_CHAR = re.compile(r"[a-z0-9]+(?:\.[0-9]+)*|\S")


def clean_chinese_char(text: str) -> str:
    """Character-level tokens for Chinese reports: NFKC (full-width forms to half-width), lowercase, then every
    non-space character is a token except runs of ASCII letters/digits ('ct', '3.5'), which stay whole."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_LATIN_RUN_OR_CHAR.findall(text))


@dataclass(frozen=True)
class ReportCleaner:
    """A named cleaning preset. `version` changes whenever the output of `clean` changes for some input."""

    name: str
    version: int
    clean: Callable[[str], str]
    description: str


CLEANERS: dict[str, ReportCleaner] = {
    cleaner.name: cleaner
    for cleaner in (
        ReportCleaner("r2gen_iu_xray", 1, clean_r2gen_iu_xray, "R2Gen's IU X-Ray cleaning, exact (min count 3)."),
        ReportCleaner(
            "r2gen_mimic_cxr", 1, clean_r2gen_mimic_cxr, "R2Gen's MIMIC-CXR cleaning, exact (min count 10)."
        ),
        ReportCleaner("basic", 1, clean_basic, "Quirk-free English cleaning for new datasets."),
        ReportCleaner("alphabetic", 1, clean_alphabetic, "`basic` keeping only alphabetic words (CoAtt)."),
        ReportCleaner("chinese_char", 1, clean_chinese_char, "Character-level Chinese (CX-CHR, COV-CTR)."),
    )
}


def get_cleaner(preset: str) -> ReportCleaner:
    """The cleaner registered as `preset`; a `ValueError` listing the presets when there is none."""
    try:
        return CLEANERS[preset]
    except KeyError:
        raise ValueError(
            f"Unknown report cleaner {preset!r}; choose one of {sorted(CLEANERS)}."
        ) from None


def clean_report(text: str, preset: str) -> str:
    """Clean `text` with the preset named `preset` and return its tokens separated by single spaces."""
    if not isinstance(text, str):
        raise TypeError(f"A report must be a str, got {type(text).__name__}: {text!r:.80}")
    return " ".join(get_cleaner(preset).clean(text).split())
