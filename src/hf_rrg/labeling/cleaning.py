"""Report cleaning, impression extraction and sentence splitting, as the CheXpert labeler prepares text."""

from __future__ import annotations

import re

_AND_OR = re.compile(r"and/or")
_SLASH_BETWEEN_LETTERS = re.compile(r"(?<=[a-z])/(?=[a-z])")
_SPACE_AFTER_PUNCT = str.maketrans({".": ". ", ",": ", "})
_EMPTY_SENTENCE = re.compile(r"\.\s+\.")
_IMPRESSION = re.compile(r"\bimpressions?\s*:", re.IGNORECASE)
# Headers that close the impression section when they follow it.
_NEXT_SECTION = re.compile(
    r"\b(recommendations?|notifications?|findings|comparisons?|indications?|history|technique|"
    r"attestation|electronically signed|dictated by|end of impression)\s*:",
    re.IGNORECASE,
)


def clean_report(report: str) -> str:
    """Clean a report as the CheXpert labeler does.

    Lowercase; ``and/or`` -> ``or``; ``x/y`` -> ``x or y`` between letters; ``..`` -> ``.``; a space after
    every ``.`` and ``,``; runs of white space collapsed to one space; empty sentences (``. .``) removed.
    """
    text = report.lower()
    text = _AND_OR.sub("or", text)
    text = _SLASH_BETWEEN_LETTERS.sub(" or ", text)
    text = text.replace("..", ".")
    text = text.translate(_SPACE_AFTER_PUNCT)
    text = " ".join(text.split())
    return _EMPTY_SENTENCE.sub(".", text)


def extract_impression(report: str) -> str:
    """The text of the last ``IMPRESSION:`` section (up to the next known header), or the whole report.

    A report without an impression header is returned unchanged, so short reports that are all
    impression (as in CheXpert's own samples) keep their text.
    """
    headers = list(_IMPRESSION.finditer(report))
    if not headers:
        return report
    section = report[headers[-1].end():]
    closing = _NEXT_SECTION.search(section)
    return section[: closing.start()] if closing else section


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of a cleaned text (split after ``.``/``?``/``!`` + space).

    A period between digits (``1. 5 cm``, produced by cleaning ``1.5``) does not end a sentence.
    """
    spans = []
    start = 0
    for match in re.finditer(r"[.?!]\s+", text):
        end = match.start() + 1
        if text[match.start()] == "." and match.start() > 0 and text[match.start() - 1].isdigit() \
                and match.end() < len(text) and text[match.end()].isdigit():
            continue
        if text[start:end].strip():
            spans.append((start, end))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return spans
