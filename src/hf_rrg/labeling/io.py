"""Read reports and write labels in the CheXpert labeler's CSV format or as JSON Lines."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from ..text_files import jsonl_records, read_text

from .labeler import ReportLabels
from .observations import OBSERVATIONS

#: The column holding the report text in CheXpert's output (`labeled_reports.csv`).
REPORTS_COLUMN = "Reports"
FORMATS = ("csv", "jsonl")


def infer_format(path: Path, explicit: str | None = None) -> str:
    """`explicit` if given, else ``"csv"`` for ``.csv`` and ``"jsonl"`` for ``.jsonl``/``.json``/``.ndjson``."""
    if explicit is not None:
        if explicit not in FORMATS:
            raise ValueError(f"unknown format {explicit!r}; choose one of {', '.join(FORMATS)}.")
        return explicit
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    raise ValueError(f"cannot tell the format of {path} from its suffix {suffix!r}; name it .csv or .jsonl, or pass --format.")


def read_chexpert_csv(path: Path) -> list[str]:
    """Reports from a CheXpert labeler input file: one report per row, one column, no header."""
    reports = []
    with io.StringIO(read_text(path), newline="") as handle:
        for row in csv.reader(handle):
            if not row:
                continue  # blank line
            if len(row) != 1:
                raise ValueError(
                    f"{path}: line {len(reports) + 1} has {len(row)} fields; the CheXpert input format is one "
                    "report per row in a single column (quote reports that contain commas)."
                )
            reports.append(row[0])
    return reports


def read_jsonl(path: Path) -> tuple[list[object | None], list[str]]:
    """Ids and reports from JSON Lines: one object per line with a ``"report"`` and an optional ``"id"``."""
    ids, reports = [], []
    for number, record in jsonl_records(path):
        if not isinstance(record, dict) or not isinstance(record.get("report"), str):
            raise ValueError(f'{path}: line {number} must be an object with a string "report" field.')
        ids.append(record.get("id"))
        reports.append(record["report"])
    return ids, reports


def read_reports(path: str | Path, fmt: str | None = None) -> tuple[list[object | None], list[str]]:
    """Ids (None where absent) and reports from a CheXpert-format CSV or a JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"report file {path} does not exist.")
    if infer_format(path, fmt) == "csv":
        reports = read_chexpert_csv(path)
        return [None] * len(reports), reports
    return read_jsonl(path)


def _csv_value(value: int | None) -> str:
    return "" if value is None else f"{float(value)}"


def write_chexpert_csv(path: str | Path, reports: Sequence[str], labels: Sequence[ReportLabels]) -> None:
    """Write CheXpert's output format: ``Reports`` + the 14 columns, values 1.0 / 0.0 / -1.0 / blank."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([REPORTS_COLUMN, *OBSERVATIONS])
        for report, result in zip(reports, labels, strict=True):
            writer.writerow([report, *(_csv_value(result.values[o]) for o in OBSERVATIONS)])


def write_jsonl(path: str | Path, ids: Sequence[object | None], reports: Sequence[str],
                labels: Sequence[ReportLabels]) -> None:
    """One JSON object a line: ``id`` (when given), ``report``, ``labels``, ``sentences``, ``mentions``."""
    with open(path, "w", encoding="utf-8") as handle:
        for report_id, report, result in zip(ids, reports, labels, strict=True):
            record: dict[str, object] = {} if report_id is None else {"id": report_id}
            record["report"] = report
            record.update(result.to_dict())
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_labels(path: str | Path, ids: Sequence[object | None], reports: Sequence[str],
                 labels: Sequence[ReportLabels], fmt: str | None = None) -> str:
    """Write labels in the format named by `fmt` or the suffix of `path`; returns the format used."""
    chosen = infer_format(Path(path), fmt)
    if chosen == "csv":
        write_chexpert_csv(path, reports, labels)
    else:
        write_jsonl(path, ids, reports, labels)
    return chosen
