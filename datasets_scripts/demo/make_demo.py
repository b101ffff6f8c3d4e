"""Build the embedded `demo` dataset from the COVID-19 chest X-ray subset (maintainer script).

Reads `metadata.csv` + `images/` of the `covid_cxr_notes` folder (a subset of the COVID-19 Image Data
Collection, Cohen et al.), keeps the rows whose licence allows redistribution and adaptation, curates each
row's radiology report (the radiographic findings) from its clinical notes, keeps the rows that have findings,
downscales every image so its shorter side is 256 px (never upscaling), re-encodes it as an 8-bit JPEG,
assigns a hash-based split per patient and writes

    <out>/images/<id>.jpg
    <out>/metadata.jsonl      one JSON object per example, sorted by id (ImageFolder layout: `file_name`)
    <card>                    the dataset card (README.md) with the per-image attribution table

Report curation (`curate_notes`): the source's `clinical_notes` mix history, examination, laboratory values,
imaging findings and discussion. Rules in this file keep the sentences that describe the radiograph
(`is_radiographic_finding`; the `Imaging Notes` section where the note has headings), strip lead-ins such as
"Chest X-ray shows" and figure pointers such as "(arrow)" (`clean_finding`), and put the sentences before the
first finding into `history`. Where the rules cannot decide (a note describing several images of a series,
discussion sentences that read like findings, a finding sentence that also names the diagnosis), the entry
of `reviewed_findings.json` for that image decides: verbatim fragments of its notes, or `null` (drop the
image), each with the reason.

Everything written except the JPEG bytes is a pure function of the source metadata, the reviewed list and the
image sizes, so re-running the script reproduces `metadata.jsonl` and the card byte for byte.

Usage (from the repository root)::

    python datasets_scripts/demo/make_demo.py [--source ../shared/data/covid_cxr_notes] [--out .../data]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "covid_cxr_notes"
DEFAULT_OUT = HERE / "data"
DEFAULT_CARD = HERE / "README.md"
DEFAULT_REVIEWED = HERE / "reviewed_findings.json"

#: Licences (exact strings of the source's `license` column) that allow redistribution AND adaptation.
ALLOWED_LICENSES: frozenset[str] = frozenset(
    {"CC BY", "CC BY 4.0", "CC BY-SA", "CC BY-NC-SA", "CC BY-NC-SA 4.0"}
)
SHORT_SIDE = 256
JPEG_QUALITY = 85
SPLIT_RATIOS: tuple[tuple[str, float], ...] = (("train", 0.7), ("validation", 0.1), ("test", 0.2))
SPLIT_SALT = "hf-rrg-demo/"
#: An RGB image is kept in colour when more than this fraction of its pixels has a channel spread > 30
#: (coloured arrows, tinted figures); otherwise it is stored as 8-bit grayscale.
COLOUR_PIXEL_FRACTION = 0.0005
REQUIRED_COLUMNS = (
    "patientid",
    "sex",
    "age",
    "finding",
    "view",
    "filename",
    "doi",
    "url",
    "license",
    "clinical_notes",
)
METADATA_FIELDS = (
    "id", "file_name", "split", "report", "history", "clinical_notes", "report_source", "finding", "view",
    "patient_id", "sex", "age", "license", "source_url", "doi", "original_filename", "credit", "width",
    "height", "original_width", "original_height",
)  # fmt: skip


@dataclass(frozen=True)
class Dropped:
    """A source row left out of the demo set, and why."""

    filename: str
    reason: str


def normalise_whitespace(text: str) -> str:
    """Collapse each run of whitespace (newlines, tabs, no-break spaces) into one space; strip the ends."""
    return " ".join(text.split())


def example_id(filename: str) -> str:
    """The example id: the source file name without its extension (letters, digits, `._-` only)."""
    stem = Path(filename).stem
    if not re.fullmatch(r"[A-Za-z0-9._-]+", stem):
        raise ValueError(
            f"Source file name {filename!r} has characters unsafe for an id; rename it or extend example_id."
        )
    return stem


def patient_group(patient_id: str) -> str:
    """The key a patient's split is hashed on: the id without a trailing letter (`331a`, `331b` -> `331`).

    The source suffixes letters to one number for images it could not tie to one person; grouping them is
    the cautious choice, so no possibly-shared patient lands in two splits.
    """
    return re.sub(r"[A-Za-z]+$", "", patient_id.strip()) or patient_id.strip()


def split_for_patient(patient_id: str) -> str:
    """Hash-based split of a patient: SHA-256 of salt + group key, first 8 bytes as a fraction of 2**64."""
    digest = hashlib.sha256(f"{SPLIT_SALT}{patient_group(patient_id)}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    cumulative = 0.0
    for name, ratio in SPLIT_RATIOS:
        cumulative += ratio
        if u < cumulative:
            return name
    return SPLIT_RATIOS[-1][0]


def target_size(width: int, height: int, short_side: int = SHORT_SIDE) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to `short_side`, aspect kept; never upscaled."""
    short = min(width, height)
    if short <= short_side:
        return width, height
    scale = short_side / short
    if width <= height:
        return short_side, max(1, round(height * scale))
    return max(1, round(width * scale)), short_side


def normalise_mode(image: Image.Image) -> Image.Image:
    """Bring any PIL mode to 8-bit `L` or `RGB`, before resizing.

    16-bit/32-bit/float images are min-max scaled to 0..255 (`L`); transparency is composited onto black (a
    radiograph's background); every other mode (P, CMYK, 1, ...) is converted to `RGB`.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    if image.mode in ("L", "RGB"):
        return image
    if image.mode in ("LA", "RGBA", "PA", "P", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def drop_fake_colour(image: Image.Image) -> Image.Image:
    """An `RGB` image without real colour (see COLOUR_PIXEL_FRACTION) becomes `L`; others pass through."""
    if image.mode != "RGB":
        return image
    arr = np.asarray(image, dtype=np.int16)
    spread = arr.max(axis=-1) - arr.min(axis=-1)
    if float((spread > 30).mean()) > COLOUR_PIXEL_FRACTION:
        return image
    return image.convert("L")


def convert_image(source: Path, target: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """Downscale `source` (shorter side 256 px, never upscaled) and save it as JPEG at `target`.

    Returns ((original_width, original_height), (width, height)).
    """
    try:
        with Image.open(source) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except OSError as exc:
        raise ValueError(f"Cannot decode image {source}: {exc}. Check the file or drop its row.") from exc
    original = image.size
    image = normalise_mode(image)
    size = target_size(*original)
    if size != original:
        image = image.resize(size, resample=Image.Resampling.LANCZOS, reducing_gap=3.0)
    image = drop_fake_colour(image)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return original, size


def read_source_rows(source: Path) -> list[dict[str, str]]:
    """Rows of `<source>/metadata.csv` as dicts of strings; errors name the file and the missing columns."""
    csv_path = source / "metadata.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"{csv_path} not found; pass --source pointing at the covid_cxr_notes folder "
            "(metadata.csv + images/)."
        )
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{csv_path} lacks column(s) {missing}; found {reader.fieldnames}.")
        return list(reader)


def select_rows(rows: Sequence[dict[str, str]]) -> tuple[list[dict[str, str]], list[Dropped]]:
    """Keep rows with an allowed licence and non-empty clinical notes; return (kept, dropped with reasons)."""
    kept: list[dict[str, str]] = []
    dropped: list[Dropped] = []
    for row in rows:
        licence = row["license"].strip()
        if licence not in ALLOWED_LICENSES:
            dropped.append(
                Dropped(row["filename"], f"licence {licence!r} does not grant redistribution+adaptation")
            )
        elif not normalise_whitespace(row["clinical_notes"]):
            dropped.append(Dropped(row["filename"], "empty clinical_notes"))
        else:
            kept.append(row)
    return kept, dropped


# ---------------------------------------------------------------------------------------------------------
# Report curation: the radiographic findings of each image, from its clinical notes
# ---------------------------------------------------------------------------------------------------------

#: Radiopaedia-style headings found in the notes, and what their section holds.
SECTION_ROLES: dict[str, str] = {
    "presentation": "history",
    "pc": "history",  # presenting complaint
    "bg": "history",  # background
    "imaging notes": "findings",
    "imaging findings": "findings",
    "imaging examination": "findings",
    "impression": "other",
    "discussion": "other",
}
_HEADING = re.compile(
    r"(?:^|(?<=[\s.]))(Presentation|Imaging [Nn]otes|Imaging [Ff]indings|Imaging examination|Impression|"
    r"Discussion|PC|BG)\s*:\s*"
)
#: Pointers into the publication's figure, not into the image: "(arrow)", "(Fig. 1)", "(+ in B)", "Image 2B".
_FIGURE_POINTER = re.compile(
    r"\s*\((?:[^()]*\b(?:arrows?|arrowheads?|asterisk|Figs?|Figure|Image)(?![a-z])[^()]*|\+[^()]*)\)"
    r"|\s*\bImage \d+[A-Z]?\b"
)
#: Spelling variants and typos of the notes, written one way so that one word is one token.
SPELLING: tuple[tuple[str, str], ...] = (
    (r"\bapperances\b", "appearances"),
    (r"\bpatten\b", "pattern"),
    (r"\bopacitites\b", "opacities"),
    (r"\bopacies\b", "opacities"),
    (r"\bbroncovascular\b", "bronchovascular"),
    (r"\babulging\b", "a bulging"),
    (r"\bair[- ]space\b", "airspace"),
    (r"\bground glass\b", "ground-glass"),
)
#: Words that only a description of the radiograph uses (a sentence needs one to be a finding).
_RADIOGRAPHIC = re.compile(
    r"opaci|consolidat|effusion|ground-glass|infiltrat|pneumothora|pneumomediast|cardiomegal|atelecta|nodul|"
    r"interstiti|reticul|airspace|bronchogram|hilar|hilum|mediastin|pleura|\btubes?\b|\blines?\b|catheter|"
    r"\bdrain\b|\bCVC\b|\bETT\b|pacemaker|clips|wire|unremarkable|\bnormal\b|\blungs? (?:are |is )?clear|"
    r"heart|cardiac|cardiothoracic|costophrenic|diaphragm|\blobes?\b|\bzones?\b|pattern|shadow|haz[ey]|"
    r"density|lucen|cyst|pneumatoc|fissure|cavitat|collapse|thickening|markings|white-out|abscess|fibrosis|"
    r"resolution|"
    r"regression|improvement|worsening|progress|aeration|oedema|edema|emphysema|\bmass\b|lymphadenopath|"
    r"adenopath|prominence|deviation|vessels|vascul|volumes?\b|predominan|hernia|^no significant findings$",
    re.I,
)
#: Words of history, examination, laboratory, diagnosis and discussion (a sentence with one is no finding).
_NOT_RADIOGRAPHIC = re.compile(
    r"\byears?[- ]old\b|\byears old\b|\bpresent(?:ed|s|ing)?\b|\bhistory\b|\badmitted\b|laborator|\bblood\b|"
    r"\bCRP\b|PCR|\bswab\b|\btest(?:ed)?\b|patholog|biopsy|histolog|treat|diagnos|differential|\bcase\b|"
    r"\bsymptoms?\b|\bfever\b|\bcough\b|dyspn|physical examination|auscultation|crackles|crepitations|"
    r"recover|\bdied\b|passed away|likely|typical (?:for|of)|classic|\binfection\b|COVID|respiratory failure|"
    r"should|\bmay explain\b",
    re.I,
)
#: A sentence about CT: the notes describe CT, not the radiograph, from there on.
_CT = re.compile(r"\bCT\b|computed tomography", re.I)
_NEGATION = r"(?:(?!\bnot?\b)[^.:])*?"
#: "Chest X-ray at admission showed ", "AP chest radiography: ", "Patient 3 - CXR: ": removed from a finding.
_LEAD_IN = re.compile(
    rf"^(?:.*?\b(?:x-?rays?|radiographs?|radiography|cxr|film)\b{_NEGATION}"
    r"\b(?:shows?|showed|showing|demonstrates?|demonstrated|demonstrating|reveal(?:s|ed)?|depicts?|depicting|"
    r"documents?|suggestive of)\s+"
    r"|[A-Za-z0-9 ?-]*?\b(?:x-?ray|radiograph|radiography|cxr)\b[^:.]*?:\s*)",
    re.I,
)
#: '?' the source put for a lost quote mark, glued to a word: "?ground-glass opacities?".
_LOST_QUOTE = re.compile(r"(?<![\w?])\?(?=[A-Za-z])|(?<=[A-Za-z])\?(?=[\s,;.]|$)")


@dataclass(frozen=True)
class Review:
    """A reviewed decision for one image: verbatim fragments of its notes (None: no attributable finding)."""

    findings: tuple[str, ...] | None
    why: str
    history: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CuratedReport:
    """An image's radiology report (findings), its history, and whether the rules or the reviewed list
    decided."""

    report: str
    history: str
    decided_by: str  # "rules" | "reviewed"


def repair_notes(text: str) -> str:
    """The notes with the source's broken characters (U+FFFD) turned into spaces and whitespace normalised."""
    return normalise_whitespace(text.replace("\ufffd", " "))


def note_sections(text: str) -> list[tuple[str, str]]:
    """`[(role, text)]` in order, role from SECTION_ROLES; `[("unlabelled", text)]` for a note without
    headings."""
    parts = _HEADING.split(text)
    sections = [("unlabelled", parts[0])] if parts[0].strip() else []
    for heading, body in zip(parts[1::2], parts[2::2]):
        sections.append((SECTION_ROLES[heading.lower()], body))
    return sections


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, figure pointers removed, runs of '.' collapsed; a sentence ends at '.' + space +
    capital or digit (so "1.5 cm" and "Fig. 1" inside a sentence do not split it)."""
    text = _FIGURE_POINTER.sub("", text)
    text = re.sub(r"\.(?:\s*\.)+", ".", text)
    pieces = re.split(r"(?<=\.)\s+(?=[A-Z0-9])", text)
    return [piece.strip() for piece in pieces if piece.strip(" .")]


def is_radiographic_finding(sentence: str) -> bool:
    """A sentence describes the radiograph: it has a radiographic word and no history/discussion word."""
    sentence = sentence.strip(" .")
    return bool(_RADIOGRAPHIC.search(sentence)) and not _NOT_RADIOGRAPHIC.search(sentence)


def clean_finding(fragment: str) -> str:
    """One finding sentence as the report writes it: figure pointers, lost-quote '?' and the lead-in
    ("Chest radiograph shows") removed (never across a negation), spelling unified, capitalised, one final
    '.'."""
    text = _FIGURE_POINTER.sub("", fragment)
    text = _LOST_QUOTE.sub("", text)
    for pattern, replacement in SPELLING:
        text = re.sub(pattern, replacement, text, flags=re.I)
    text = _LEAD_IN.sub("", text.strip(), count=1).strip(" .,;:")
    return text[:1].upper() + text[1:] + "." if text else ""


def _as_sentence(text: str) -> str:
    text = re.sub(r"\s+([.,;:])", r"\1", text.strip())
    return text if text.endswith((".", "?", "!")) else text + "."


def rule_findings(notes: str) -> tuple[list[str], list[str]]:
    """(finding sentences, history sentences) the rules take from `notes` (not yet cleaned).

    With headings: findings from the imaging section (sentences about CT left out), history from the
    presentation (PC, BG) sections. Without: findings are the radiographic sentences up to the first
    sentence about CT; history the sentences before the first finding. Discussion and impression sections,
    and sentences after the first finding that are not findings, go to neither (they stay in
    `clinical_notes`).
    """
    sections = note_sections(repair_notes(notes))
    findings: list[str] = []
    history: list[str] = []
    if any(role == "findings" for role, _ in sections):
        for role, body in sections:
            for sentence in split_sentences(body):
                if role == "findings" and is_radiographic_finding(sentence) and not _CT.search(sentence):
                    findings.append(sentence)
                elif role == "history":
                    history.append(sentence)
        return findings, history
    for sentence in split_sentences(repair_notes(notes)):
        if _CT.search(sentence):
            break
        if is_radiographic_finding(sentence):
            findings.append(sentence)
        elif not findings:
            history.append(sentence)
    return findings, history


def load_reviewed(path: Path) -> dict[str, Review]:
    """The reviewed list: `{id: {"findings": [fragment, ...] | null, "why": str, "history": [...]?}}`."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found; it ships beside make_demo.py (restore it from git)."
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    reviewed = {}
    for ident, entry in raw.items():
        if not isinstance(entry, dict) or not str(entry.get("why", "")).strip() or "findings" not in entry:
            raise ValueError(
                f"{path}: entry {ident!r} needs 'findings' (a list of fragments or null) and 'why'."
            )
        findings, history = entry["findings"], entry.get("history")
        for key, value in (("findings", findings), ("history", history)):
            is_strings = isinstance(value, list) and all(isinstance(v, str) for v in value)
            if value is not None and not is_strings:
                raise ValueError(f"{path}: entry {ident!r} key {key!r} must be a list of strings or null.")
        reviewed[ident] = Review(
            findings=None if findings is None else tuple(findings),
            why=entry["why"],
            history=None if history is None else tuple(history),
        )
    return reviewed


def _verbatim(ident: str, fragments: Sequence[str], notes: str, key: str) -> None:
    for fragment in fragments:
        if fragment not in notes:
            raise ValueError(
                f"reviewed_findings.json: {key} fragment {fragment!r} of {ident!r} is not in its "
                "clinical_notes; fragments must be copied verbatim from the notes."
            )


def _unique_joined(sentences: Sequence[str]) -> str:
    """Sentences joined by one space, a repeated sentence kept once."""
    return " ".join(dict.fromkeys(s for s in sentences if s))


def curate_notes(ident: str, notes: str, reviewed: dict[str, Review]) -> CuratedReport | None:
    """The curated report of image `ident` from its `notes`, or None when it has no attributable finding."""
    repaired = repair_notes(notes)
    findings, history = rule_findings(notes)
    decided_by = "rules"
    review = reviewed.get(ident)
    if review is not None:
        decided_by = "reviewed"
        if review.findings is None:
            return None
        _verbatim(ident, review.findings, repaired, "findings")
        findings = list(review.findings)
        if review.history is not None:
            _verbatim(ident, review.history, repaired, "history")
            history = list(review.history)
        else:  # the rules' history sentences that end before the first reviewed finding starts
            start = min(repaired.index(fragment) for fragment in findings)
            history = [h for h in history if 0 <= repaired.find(h) and repaired.find(h) + len(h) <= start]
    report = _unique_joined([clean_finding(f) for f in findings])
    if not report:
        return None
    history_text = _unique_joined([_as_sentence(_FIGURE_POINTER.sub("", h)) for h in history])
    return CuratedReport(report=report, history=history_text, decided_by=decided_by)


def source_credit(other_notes: str) -> str | None:
    """The author credit in the source's `other_notes` ("Case courtesy of ...", "Credit to ..."), if any."""
    text = normalise_whitespace(other_notes)
    return text if re.match(r"(Case courtesy of|Credit to)\b", text) else None


def _optional(value: str) -> str | None:
    value = normalise_whitespace(value)
    return value if value and value != "?" else None


def build_record(
    row: dict[str, str], curated: CuratedReport, original: tuple[int, int], size: tuple[int, int]
) -> dict:
    """One metadata.jsonl object (keys in METADATA_FIELDS order) from a source row, its curated report and the
    image sizes. `file_name` is the ImageFolder key, so `load_dataset("imagefolder", data_dir=...)` works."""
    ident = example_id(row["filename"])
    age = row["age"].strip()
    record = {
        "id": ident,
        "file_name": f"images/{ident}.jpg",
        "split": split_for_patient(row["patientid"]),
        "report": curated.report,
        "history": curated.history,
        "clinical_notes": repair_notes(row["clinical_notes"]),
        "report_source": curated.decided_by,
        "finding": _optional(row["finding"]),
        "view": _optional(row["view"]),
        "patient_id": row["patientid"].strip(),
        "sex": _optional(row["sex"]),
        "age": int(age) if age.isdigit() else None,
        "license": row["license"].strip(),
        "source_url": _optional(row["url"]),
        "doi": _optional(row["doi"]),
        "original_filename": row["filename"],
        "credit": source_credit(row.get("other_notes", "")),
        "width": size[0],
        "height": size[1],
        "original_width": original[0],
        "original_height": original[1],
    }
    return record


def _cell(value: object) -> str:
    """A Markdown table cell: `-` for missing values, pipes escaped."""
    if value is None or value == "":
        return "-"
    return str(value).replace("|", "\\|")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _source_link(record: dict) -> str:
    parts = []
    if record["source_url"]:
        parts.append(f"<{record['source_url']}>")
    if record["doi"]:
        parts.append(f"doi:{record['doi']}")
    return _cell(" ".join(parts))


CARD_HEADER = """---
license: other
license_name: mixed-cc-by-nc-sa
license_link: https://creativecommons.org/licenses/by-nc-sa/4.0/
pretty_name: hf-rrg demo chest X-rays with radiographic findings
language:
- en
task_categories:
- image-to-text
tags:
- medical
- radiology
- chest-x-ray
- radiology-report-generation
size_categories:
- n<1K
---

<!-- Generated by datasets_scripts/demo/make_demo.py from the source metadata: edit that script instead. -->

# hf-rrg `demo`: {n_images} real chest X-rays with their radiographic findings

A small dataset shipped inside the `hf-rrg` package so that the README's main job and the tests run
without downloading anything: {n_images} real chest radiographs of {n_patients} patients, each paired with a
short radiology report (the radiographic findings) curated from the clinical notes published with it; the
patient's history and the full notes are kept in their own columns.

## Loading

```python
from hf_rrg.data import load_builder

ds = load_builder("demo")          # DatasetDict: train / validation / test, image bytes embedded
```

Without hf-rrg (the no-code route): `data/` is an ImageFolder (`metadata.jsonl` names each image in
`file_name`), so `datasets.load_dataset("imagefolder", data_dir="<this folder>/data", split="train")` gives
all {n_images} examples in one split with an `image` column and every metadata column; pick a split with
`ds.filter(lambda row: row["split"] == "test")`. `datasets.load_dataset("<this folder>")` does **not** work:
`datasets` 4+ refuses folders holding a builder script ("Dataset scripts are no longer supported"); use
`load_builder` or the ImageFolder route, or export Parquet with `hf-rrg data export demo --out DIR` and
`load_dataset(DIR)`.

Features of `load_builder("demo")`: `id`, `images` (a list of images; one view per example here), `report`
(the findings), `history`, `clinical_notes`, `finding` (the source's diagnosis label, e.g. `COVID-19`),
`view_positions` (one per image: `PA`, `AP`, `AP Supine`, or `""` where the source gives none), `patient_id`,
`license`, `source_url`.

## Intended use

Demos, tutorials, smoke tests and unit tests of the data path and of the models. **Not for clinical use,
and not a benchmark**: it is tiny, the reports were curated from case-report prose rather than written as
radiology reports, and the images come from publications and teaching sites, not from one clinical workflow.
Numbers measured on it say nothing about a model's quality.

## Licence

Each image keeps the licence of its source, listed per image below: {licence_summary}.
Only rows whose licence allows both redistribution and adaptation were kept (CC BY, CC BY 4.0, CC BY-SA,
CC BY-NC-SA, CC BY-NC-SA 4.0); rows whose only licence statement was e.g. "listed as authorized for
everyone", which states no terms, were dropped. Because the set mixes CC BY, CC BY-SA and CC BY-NC-SA
material, **the set as a whole may be used for non-commercial purposes only, and derivatives of it must be
shared alike (CC BY-NC-SA 4.0 terms)**; every use must attribute the sources below. Individual CC BY or
CC BY-SA images may be used under their own, more permissive, terms. Hence `license: other` above.

## Provenance

Source: the COVID-19 Image Data Collection (<https://github.com/ieee8023/covid-chestxray-dataset>),
via the subset in GitHub GeneralBlockchain/covid-19-chest-xray-lung-bounding-boxes-dataset (commit
103688cb), copied unchanged into the project's shared data folder as `covid_cxr_notes`.

Please cite:

> Cohen JP, Morrison P, Dao L, Roth K, Duong TQ, Ghassemi M. COVID-19 Image Data Collection: Prospective
> Predictions Are the Future. Machine Learning for Biomedical Imaging (MELBA), 2020.

```bibtex
@article{{cohen2020covidProspective,
  title   = {{COVID-19 Image Data Collection: Prospective Predictions Are the Future}},
  author  = {{Joseph Paul Cohen and Paul Morrison and Lan Dao and Karsten Roth and
             Tim Q Duong and Marzyeh Ghassemi}},
  journal = {{Machine Learning for Biomedical Imaging}},
  year    = {{2020}}
}}
```

## What was changed

- Rows kept: {n_images} of {n_source} source rows ({n_dropped} dropped, listed below).
- Images: downscaled so the shorter side is {short_side} px (aspect ratio kept, Lanczos filter, never
  upscaled; {n_small}), alpha composited onto black, EXIF orientation applied, and re-encoded as 8-bit
  JPEG (quality {quality}); images without real colour content are stored as grayscale, the {n_colour}
  with coloured marks or tint as RGB. Files are renamed `images/<id>.jpg`, `id` being the source file name
  without its extension.
- Text: `clinical_notes` is the source's notes with whitespace normalised and its broken characters (U+FFFD)
  made spaces. `report` holds the sentences of the notes that describe the radiograph, chosen by rules in
  `make_demo.py` ({n_rules} images) or, where the rules cannot decide, by the reviewed list
  `reviewed_findings.json` ({n_reviewed} images: verbatim fragments of the notes, each entry with its reason).
  The rules take the `Imaging Notes` section where the notes have headings, otherwise the sentences with a
  radiographic word and no word of history, examination, laboratory, diagnosis or discussion, up to the
  first sentence about CT; they drop figure pointers ("(arrow)", "(Fig. 1)") and lead-ins ("Chest X-ray
  shows"), unify a few spellings ("air space" -> "airspace", "ground glass" -> "ground-glass", typos), and
  keep each sentence's wording otherwise. `history` is the presentation section, or the sentences before the
  first finding; discussion and laboratory text stay only in `clinical_notes`. `report_source` says which of
  the two decided. `view` values `?` and empty become missing; `finding` is the source's diagnosis label
  unchanged (`todo` means the source had not labelled it yet).
- Split: by patient, hash-based (SHA-256 of `{salt}` + patient id, ratios 70/10/20), so it is stable
  on every machine and no patient is in two splits; ids differing only by a trailing letter (`331a`,
  `331b`) count as one patient.

## Splits

| split | examples | patients |
|---|---|---|
{split_rows}

`data/metadata.jsonl` holds one line per example with `id`, `file_name`, `split`, `report`, `history`,
`clinical_notes`, `report_source`, `finding`, `view`, `patient_id`, `sex`, `age`, `license`, `source_url`,
`doi`, `original_filename`, `credit` (the author credit from the source's `other_notes`, where it gives one)
and the image sizes (`width`, `height`, `original_width`, `original_height`).

## Rows left out

| source file | reason |
|---|---|
{dropped_rows}

## Per-image attribution

Credits are copied as the source gives them (its metadata had already replaced some accented letters by
`?`); `-` means the source names no author beyond the linked page.

| id | original file | licence | source | credit (as given by the source) |
|---|---|---|---|---|
{attribution_rows}
"""


def render_card(records: Sequence[dict], n_source: int, dropped: Sequence[Dropped]) -> str:
    """The dataset card (README.md), computed from the records only, so it stays in sync with the data."""
    licences = Counter(r["license"] for r in records)
    licence_summary = ", ".join(
        f"{name} ({_count(count, 'image')})" for name, count in sorted(licences.items())
    )
    dropped_rows = [
        f"| {_cell(d.filename)} | {_cell(d.reason)} |" for d in sorted(dropped, key=lambda d: d.filename)
    ]
    small = [r for r in records if min(r["original_width"], r["original_height"]) < SHORT_SIDE]
    n_small = (
        "no source image was smaller than that"
        if not small
        else f"{len(small)} smaller image(s) kept at their size: " + ", ".join(r["id"] for r in small)
    )
    split_rows = []
    for name, _ in SPLIT_RATIOS:
        in_split = [r for r in records if r["split"] == name]
        split_rows.append(f"| {name} | {len(in_split)} | {len({r['patient_id'] for r in in_split})} |")
    split_rows.append(f"| total | {len(records)} | {len({r['patient_id'] for r in records})} |")
    attribution_rows = [
        "| "
        + " | ".join([_cell(r["id"]), _cell(r["original_filename"]), _cell(r["license"]), _source_link(r)])
        + f" | {_cell(r['credit'])} |"
        for r in records
    ]
    return CARD_HEADER.format(
        n_images=len(records),
        n_patients=len({r["patient_id"] for r in records}),
        n_source=n_source,
        n_dropped=len(dropped),
        dropped_rows="\n".join(dropped_rows) or "| - | - |",
        n_rules=sum(1 for r in records if r["report_source"] == "rules"),
        n_reviewed=sum(1 for r in records if r["report_source"] == "reviewed"),
        licence_summary=licence_summary,
        short_side=SHORT_SIDE,
        quality=JPEG_QUALITY,
        n_small=n_small,
        n_colour=sum(1 for r in records if r.get("_mode") == "RGB"),
        salt=SPLIT_SALT,
        split_rows="\n".join(split_rows),
        attribution_rows="\n".join(attribution_rows),
    )


def _progress(items: Sequence, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with datasets/transformers
        return items
    return tqdm(items, desc=desc, unit="img")


def curate_rows(
    rows: Sequence[dict[str, str]], reviewed: dict[str, Review]
) -> tuple[list[tuple[dict[str, str], CuratedReport]], list[Dropped]]:
    """(rows with their curated report, rows dropped because their notes give no finding for the image)."""
    unknown = sorted(set(reviewed) - {example_id(r["filename"]) for r in rows})
    if unknown:
        raise ValueError(
            f"reviewed_findings.json names id(s) {unknown} that are not among the kept source rows; "
            "remove those entries or fix the ids."
        )
    curated: list[tuple[dict[str, str], CuratedReport]] = []
    dropped: list[Dropped] = []
    for row in rows:
        ident = example_id(row["filename"])
        result = curate_notes(ident, row["clinical_notes"], reviewed)
        if result is not None:
            curated.append((row, result))
        elif ident in reviewed:
            dropped.append(Dropped(row["filename"], f"reviewed: {reviewed[ident].why}"))
        else:
            dropped.append(Dropped(row["filename"], "no sentence of the notes describes the radiograph"))
    return curated, dropped


def make_demo(
    source: Path, out: Path, card: Path | None, reviewed_path: Path = DEFAULT_REVIEWED
) -> list[dict]:
    """Build the demo data from `source` into `out` (and the card at `card`); return the metadata records."""
    source, out = Path(source), Path(out)
    rows = read_source_rows(source)
    kept, dropped = select_rows(rows)
    ids = Counter(example_id(r["filename"]).lower() for r in kept)
    clashes = sorted(i for i, n in ids.items() if n > 1)
    if clashes:
        raise ValueError(
            f"Source file names give clashing ids {clashes} (case-insensitive); make example_id unique."
        )
    with_reports, no_findings = curate_rows(kept, load_reviewed(Path(reviewed_path)))
    dropped = dropped + no_findings
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    modes: dict[str, str] = {}
    ordered = sorted(with_reports, key=lambda pair: example_id(pair[0]["filename"]))
    for row, curated in _progress(ordered, "demo images"):
        src = source / "images" / row["filename"]
        if not src.is_file():
            raise FileNotFoundError(f"{src} (named in {source / 'metadata.csv'}) does not exist.")
        ident = example_id(row["filename"])
        original, size = convert_image(src, images_dir / f"{ident}.jpg")
        with Image.open(images_dir / f"{ident}.jpg") as written:
            modes[ident] = written.mode
        records.append(build_record(row, curated, original, size))
    keep_names = {Path(r["file_name"]).name for r in records}
    for stale in sorted(images_dir.glob("*.jpg")):
        if stale.name not in keep_names:
            stale.unlink()
            print(f"removed stale image {stale}")
    with (out / "metadata.jsonl").open("w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n")
    if card is not None:
        annotated = [dict(r, _mode=modes[r["id"]]) for r in records]
        Path(card).write_text(render_card(annotated, len(rows), dropped), encoding="utf-8", newline="\n")

    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    splits = Counter(r["split"] for r in records)
    small = [r["id"] for r in records if min(r["original_width"], r["original_height"]) < SHORT_SIDE]
    for d in dropped:
        print(f"dropped {d.filename}: {d.reason}")
    if small:
        print(f"kept at original size (shorter side < {SHORT_SIDE} px): {', '.join(small)}")
    print(
        f"wrote {len(records)} examples ({dict(splits)}; {sum(m == 'RGB' for m in modes.values())} RGB) "
        f"to {out} ({total / 1e6:.2f} MB)" + (f"; card: {card}" if card is not None else "")
    )
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source", type=Path, default=DEFAULT_SOURCE, help=f"covid_cxr_notes folder ({DEFAULT_SOURCE})"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output data folder ({DEFAULT_OUT})")
    parser.add_argument(
        "--card", type=Path, default=DEFAULT_CARD, help=f"where to write the dataset card ({DEFAULT_CARD})"
    )
    parser.add_argument("--no-card", action="store_true", help="do not write the dataset card")
    parser.add_argument(
        "--reviewed", type=Path, default=DEFAULT_REVIEWED,
        help=f"the reviewed findings list ({DEFAULT_REVIEWED})",
    )
    args = parser.parse_args(argv)
    make_demo(args.source, args.out, None if args.no_card else args.card, args.reviewed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
