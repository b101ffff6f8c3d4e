"""Your own report-generation data: a CSV or JSONL table of image paths and reports, as a `datasets` builder.

The table is `data_files` (a path, or `{split: path}` for one file per split) or the single `.csv` / `.jsonl` /
`.json` file inside `data_dir` (or `metadata_file=`). Each row is one study: one or more image columns (a cell
may hold several paths separated by `;`, or a JSON list in JSONL), a report column, and optional id, patient-id
and split columns. Image paths are relative to the table's folder (absolute paths work too).

Without a split column the rows are split by a SHA-256 hash of the patient id (or the id) with `split_ratios`
(default 0.7 / 0.1 / 0.2): stable across runs, machines and Python versions, and one patient never spans two
splits.

Images (PNG, JPEG, DICOM) are decoded by hf-rrg's own loader (`hf_rrg.modeling.image_loading.load_image`), never by
`datasets`: the `images` column holds ``{"bytes": None, "path": ...}`` cells (``datasets.Image(decode=False)``) that
the image processor reads. Every image is decoded once when the dataset is built, so a truncated, corrupt or
constant image fails then, naming the file, instead of in the middle of training (`skip_bad_images=True` leaves
those studies out and lists them). Tables must be UTF-8; a report without any letter or digit counts as empty.

Load with `hf_rrg.data.load_builder("report_folder", data_dir, image_columns=["frontal", "lateral"])`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import datasets
from tqdm.auto import tqdm

from hf_rrg.data import DEFAULT_SPLIT_RATIOS, deterministic_split
from hf_rrg.modeling.image_loading import ImageLoadError, load_image
from hf_rrg.text_files import read_text

_DESCRIPTION = (
    "A user's own radiology report generation data read from a CSV/JSONL table of image paths and reports."
)
_TABLE_SUFFIXES = (".csv", ".jsonl", ".json")
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


@dataclass
class ReportFolderConfig(datasets.BuilderConfig):
    """Options of the report_folder builder.

    Attributes:
        metadata_file: the table (default: `data_files`, else the single .csv/.jsonl/.json file in data_dir).
        image_columns: column(s) holding image paths; a cell may list several paths separated by `;`.
        report_column: column holding the report text.
        id_column: study id column (default: `id` when present, else `<row number>`).
        patient_column: patient id column used to keep a patient's studies in one split (default: none).
        split_column: column with train/val/test values (default: `split` when present, else a hash split).
        split_ratios: train/validation/test ratios of the hash split.
        split_salt: text mixed into the split hash (a different salt gives a different, still stable split).
        drop_empty_reports: drop rows whose report is empty or has no word (and say how many) instead of failing.
        skip_missing_images: drop rows whose image files are missing (and say how many) instead of failing.
        check_images: decode every image when the dataset is built (default); False trusts the files (a bad one
            then fails when it is read, e.g. during training).
        skip_bad_images: drop rows with an image that cannot be decoded (and list those files) instead of failing.
    """

    metadata_file: str | None = None
    image_columns: tuple[str, ...] | str = ("image",)
    report_column: str = "report"
    id_column: str | None = None
    patient_column: str | None = None
    split_column: str | None = None
    split_ratios: tuple[float, float, float] = DEFAULT_SPLIT_RATIOS
    split_salt: str = ""
    drop_empty_reports: bool = False
    skip_missing_images: bool = False
    check_images: bool = True
    skip_bad_images: bool = False


def read_table(path: Path) -> list[dict]:
    """Rows of a CSV (header row), JSONL (one object per line) or JSON (a list of objects) file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return list(csv.DictReader(io.StringIO(read_text(path, "utf-8-sig"), newline="")))
    if suffix == ".jsonl":
        rows = []
        for number, line in enumerate(read_text(path).splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path} line {number} is not valid JSON: {error}") from None
        return rows
    if suffix == ".json":
        try:
            rows = json.loads(read_text(path))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(rows, list):
            raise ValueError(f"{path} must hold a JSON list of row objects.")
        return rows
    raise ValueError(f"Unsupported table {path}: use a .csv, .jsonl or .json file.")


def has_words(report: str) -> bool:
    """Whether `report` holds at least one letter or digit (``"..."`` or ``" - "`` do not)."""
    return any(character.isalnum() for character in report)


def _paths_in_cell(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(";") if part.strip()]


class ReportFolder(datasets.GeneratorBasedBuilder):
    """Radiology report generation data from a user's own CSV/JSONL table."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = ReportFolderConfig

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=datasets.Features(
                {
                    "id": datasets.Value("string"),
                    "images": datasets.List(datasets.Image(decode=False)),  # decoded by hf-rrg's loader
                    "report": datasets.Value("string"),
                    "patient_id": datasets.Value("string"),
                    "image_path": datasets.List(datasets.Value("string")),
                }
            ),
        )

    def _tables(self) -> dict[str | None, Path]:
        """{split or None: table path}; None means one table split by its column or by hash."""
        if self.config.metadata_file:
            return {None: Path(self.config.metadata_file).expanduser().resolve()}
        data_files = self.config.data_files
        if data_files:
            files = {split: list(paths) for split, paths in data_files.items()}
            if len(files) == 1:
                (paths,) = files.values()
                if len(paths) != 1:
                    raise ValueError(f"report_folder reads one table per split; got {paths}.")
                return {None: Path(paths[0])}
            for split, paths in files.items():
                if len(paths) != 1:
                    raise ValueError(f"report_folder reads one table per split; got {paths} for {split!r}.")
            return {str(split): Path(paths[0]) for split, paths in files.items()}
        if not self.config.data_dir:
            raise ValueError(
                "report_folder needs data_files=<table.csv|.jsonl>, metadata_file=... or data_dir=..."
            )
        data_dir = Path(self.config.data_dir)
        tables = sorted(p for p in data_dir.iterdir() if p.suffix.lower() in _TABLE_SUFFIXES and p.is_file())
        if len(tables) != 1:
            raise ValueError(
                f"report_folder expects exactly one .csv/.jsonl/.json table in {data_dir}; found "
                f"{[p.name for p in tables]}. Pass metadata_file=<path> to choose one."
            )
        return {None: tables[0]}

    def _split_generators(self, dl_manager):
        splits: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
        for fixed_split, table in self._tables().items():
            if not table.is_file():
                raise FileNotFoundError(f"report_folder table {table} does not exist.")
            for example in self._examples(table, fixed_split):
                splits.setdefault(example.pop("split"), []).append(example)
        self._check_images(splits)
        if self.config.check_images:
            self._check_decodable(splits)
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"examples": examples})
            for split, examples in splits.items()
            if examples
        ]

    def _examples(self, table: Path, fixed_split: str | None) -> list[dict]:
        config = self.config
        rows = read_table(table)
        if not rows:
            raise ValueError(f"report_folder table {table} has no rows.")
        columns = list(dict.fromkeys(k for row in rows for k in row))
        image_columns = (
            [c.strip() for c in config.image_columns.split(",")]
            if isinstance(config.image_columns, str)
            else list(config.image_columns)
        )
        id_column = config.id_column or ("id" if "id" in columns else None)
        split_column = config.split_column or (
            "split" if "split" in columns and fixed_split is None else None
        )
        required = [*image_columns, config.report_column]
        required += [c for c in (config.id_column, config.patient_column, config.split_column) if c]
        absent = [c for c in required if c not in columns]
        if absent:
            raise ValueError(f"{table} has no column(s) {absent}; its columns are {columns}.")

        empty = [row for row in rows if not has_words(str(row.get(config.report_column) or ""))]
        if empty:
            first = [
                str(row.get(id_column)) if id_column else f"row {rows.index(row) + 1}" for row in empty[:5]
            ]
            if not config.drop_empty_reports:
                raise ValueError(
                    f"{table}: {len(empty)} row(s) have an empty or word-less {config.report_column!r} (first: "
                    f"{first}); fill them or pass drop_empty_reports=True."
                )
            print(f"report_folder: dropped {len(empty)} rows with an empty report from {table.name}.")

        examples = []
        seen: set[str] = set()
        for number, row in enumerate(rows, start=1):
            report = str(row.get(config.report_column) or "").strip()
            if not has_words(report):
                continue
            study_id = str(row[id_column]).strip() if id_column else f"{number}"
            if study_id in seen:
                raise ValueError(f"{table}: id {study_id!r} occurs more than once; ids must be unique.")
            seen.add(study_id)
            patient = str(row[config.patient_column]).strip() if config.patient_column else ""
            relative = [p for c in image_columns for p in _paths_in_cell(row.get(c))]
            if fixed_split is not None:
                split = fixed_split
            elif split_column:
                value = str(row.get(split_column) or "").strip().lower()
                if value not in _SPLIT_ALIASES:
                    raise ValueError(
                        f"{table}: row {study_id!r} has split {row.get(split_column)!r}; use one of "
                        f"{sorted(_SPLIT_ALIASES)}."
                    )
                split = _SPLIT_ALIASES[value]
            else:
                split = deterministic_split(patient or study_id, config.split_ratios, salt=config.split_salt)
            examples.append(
                {
                    "id": study_id,
                    "report": report,
                    "patient_id": patient,
                    "image_path": relative,
                    "images": [str((table.parent / p).resolve()) for p in relative],
                    "split": split,
                }
            )
        return examples

    def _check_images(self, splits: dict[str, list[dict]]) -> None:
        missing: list[str] = []
        for split, examples in splits.items():
            kept = []
            for example in examples:
                absent = [p for p in example["images"] if not Path(p).is_file()]
                missing.extend(absent)
                if not absent:
                    kept.append(example)
            splits[split] = kept
        if missing and not self.config.skip_missing_images:
            raise FileNotFoundError(
                f"{len(missing)} image file(s) listed in the report_folder table are missing (first: "
                f"{missing[:3]}); fix the paths (relative to the table's folder) or pass skip_missing_images=True."
            )
        if missing:
            print(f"report_folder: skipped rows with {len(missing)} missing image files.")

    def _check_decodable(self, splits: dict[str, list[dict]]) -> None:
        """Decode every image once with hf-rrg's loader (progress bar on stderr); unreadable images fail the build
        naming the files, or with `skip_bad_images` their studies are left out and the files listed."""
        paths = sorted({path for examples in splits.values() for example in examples for path in example["images"]})
        problems: dict[str, str] = {}

        def check(path: str) -> None:
            try:
                load_image(path)
            except ImageLoadError as error:
                problems[path] = " ".join(str(error).split())

        workers = min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in tqdm(pool.map(check, paths), total=len(paths), desc="report_folder: checking images", unit="image"):
                pass
        if not problems:
            return
        bad = sorted(problems)
        if not self.config.skip_bad_images:
            shown = "; ".join(problems[path] for path in bad[:5]) + (" ..." if len(bad) > 5 else "")
            raise ImageLoadError(
                f"{len(bad)} image file(s) listed in the report_folder table cannot be read ({shown}); replace "
                "them, remove their rows, or pass skip_bad_images=True to leave those studies out."
            )
        dropped = 0
        for split, examples in splits.items():
            kept = [example for example in examples if not any(path in problems for path in example["images"])]
            dropped += len(examples) - len(kept)
            splits[split] = kept
        print(f"report_folder: left out {dropped} studies with unreadable images ({len(bad)} file(s)):")
        for path in bad:
            print(f"  {path}: {problems[path]}")

    def _generate_examples(self, examples):
        for example in examples:
            yield example["id"], example
