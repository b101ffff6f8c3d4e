"""Build the embedded `demo` dataset from the COVID-19 chest X-ray subset (maintainer script).

Reads `metadata.csv` + `images/` of the `covid_cxr_notes` folder (a subset of the COVID-19 Image Data
Collection, Cohen et al.), keeps the rows whose licence allows redistribution and adaptation and whose
clinical notes are not empty, downscales every image so its shorter side is 256 px (never upscaling),
re-encodes it as an 8-bit JPEG, assigns a hash-based split per patient and writes

    <out>/images/<id>.jpg
    <out>/metadata.jsonl      one JSON object per example, sorted by id
    <card>                    the dataset card (README.md) with the per-image attribution table

Everything written except the JPEG bytes is a pure function of the source metadata and image sizes, so
re-running the script reproduces `metadata.jsonl` and the card byte for byte.

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
    "id", "file", "split", "report", "finding", "view", "patient_id", "sex", "age", "license", "source_url",
    "doi", "original_filename", "credit", "width", "height", "original_width", "original_height",
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


def source_credit(other_notes: str) -> str | None:
    """The author credit in the source's `other_notes` ("Case courtesy of ...", "Credit to ..."), if any."""
    text = normalise_whitespace(other_notes)
    return text if re.match(r"(Case courtesy of|Credit to)\b", text) else None


def _optional(value: str) -> str | None:
    value = normalise_whitespace(value)
    return value if value and value != "?" else None


def build_record(row: dict[str, str], original: tuple[int, int], size: tuple[int, int]) -> dict:
    """One metadata.jsonl object (keys in METADATA_FIELDS order) from a source row and the image sizes."""
    ident = example_id(row["filename"])
    age = row["age"].strip()
    record = {
        "id": ident,
        "file": f"images/{ident}.jpg",
        "split": split_for_patient(row["patientid"]),
        "report": normalise_whitespace(row["clinical_notes"]),
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
pretty_name: hf-rrg demo chest X-rays with clinical notes
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

# hf-rrg `demo`: {n_images} real chest X-rays with clinical notes

A small dataset shipped inside the `hf-rrg` package so that the README's main job and the tests run
without downloading anything: {n_images} real chest radiographs of {n_patients} patients, each paired with the
free-text clinical notes (history and radiographic findings) published with it.

Load it with `hf_rrg.data.load_builder("demo")` (builder: `demo.py` beside this card; the data are in
`data/`). Features: `id`, `images` (a list of images; one view per example here), `report`, `finding`,
`view_positions` (one per image: `PA`, `AP`, `AP Supine`, or `""` where the source gives none), `patient_id`,
`license`, `source_url`. Image bytes are embedded in the prepared Arrow files.

## Intended use

Demos, tutorials, smoke tests and unit tests of the data path and of the models. **Not for clinical use,
and not a benchmark**: it is tiny, the notes are case-report prose rather than radiology reports, and the
images come from publications and teaching sites, not from one clinical workflow. Numbers measured on it
say nothing about a model's quality.

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

- Rows kept: {n_images} of {n_source} source rows ({n_dropped} dropped: {dropped_summary}).
- Images: downscaled so the shorter side is {short_side} px (aspect ratio kept, Lanczos filter, never
  upscaled; {n_small}), alpha composited onto black, EXIF orientation applied, and re-encoded as 8-bit
  JPEG (quality {quality}); images without real colour content are stored as grayscale, the {n_colour}
  with coloured marks or tint as RGB. Files are renamed `images/<id>.jpg`, `id` being the source file name
  without its extension.
- Text: `report` is the source's `clinical_notes` with whitespace normalised (runs of spaces/newlines
  collapsed to one space, ends stripped); no other edit. `view` values `?` and empty become missing;
  `finding` is the source's label unchanged (`todo` means the source had not labelled it yet).
- Split: by patient, hash-based (SHA-256 of `{salt}` + patient id, ratios 70/10/20), so it is stable
  on every machine and no patient is in two splits; ids differing only by a trailing letter (`331a`,
  `331b`) count as one patient.

## Splits

| split | examples | patients |
|---|---|---|
{split_rows}

`data/metadata.jsonl` holds one line per example with `id`, `file`, `split`, `report`, `finding`, `view`,
`patient_id`, `sex`, `age`, `license`, `source_url`, `doi`, `original_filename`, `credit` (the author
credit from the source's `other_notes`, where it gives one) and the image sizes (`width`, `height`,
`original_width`, `original_height`).

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
    reasons = Counter(d.reason for d in dropped)
    dropped_summary = (
        "; ".join(f"{_count(count, 'row')}: {reason}" for reason, count in sorted(reasons.items())) or "none"
    )
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
        dropped_summary=dropped_summary,
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


def make_demo(source: Path, out: Path, card: Path | None) -> list[dict]:
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
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    modes: dict[str, str] = {}
    for row in _progress(sorted(kept, key=lambda r: example_id(r["filename"])), "demo images"):
        src = source / "images" / row["filename"]
        if not src.is_file():
            raise FileNotFoundError(f"{src} (named in {source / 'metadata.csv'}) does not exist.")
        ident = example_id(row["filename"])
        original, size = convert_image(src, images_dir / f"{ident}.jpg")
        with Image.open(images_dir / f"{ident}.jpg") as written:
            modes[ident] = written.mode
        records.append(build_record(row, original, size))
    keep_names = {Path(r["file"]).name for r in records}
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
    args = parser.parse_args(argv)
    make_demo(args.source, args.out, None if args.no_card else args.card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
