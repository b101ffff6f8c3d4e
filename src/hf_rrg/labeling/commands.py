"""`hf-rrg label`: label reports with the CheXpert-style rule labeler."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `label` command to the `hf-rrg` parser."""
    parser = subparsers.add_parser(
        "label",
        help="label reports with the 14 CheXpert observations (rule-based)",
        description=(
            "Label radiology reports with the 14 CheXpert observations (1 positive, 0 negative, -1 uncertain, "
            "blank unmentioned). Input: the CheXpert labeler's CSV (one report per row, no header) or JSONL "
            '({"report": ...} or {"id": ..., "report": ...} per line). Output: the CheXpert labeler\'s CSV '
            "(Reports + 14 columns) or JSONL with values and mention spans."
        ),
    )
    parser.add_argument("reports", type=Path, help="input file (.csv in CheXpert format, or .jsonl)")
    parser.add_argument("--out", type=Path, required=True, help="output file (.csv or .jsonl)")
    parser.add_argument("--format", choices=("csv", "jsonl"), help="output format (default: from --out's suffix)")
    parser.add_argument("--input-format", choices=("csv", "jsonl"), help="input format (default: from the suffix)")
    parser.add_argument("--impression-only", action="store_true",
                        help="label only the IMPRESSION section of reports that have one")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run_label)


def run_label(args: argparse.Namespace) -> int:
    """Read, label and write; print where the labels went."""
    from .io import infer_format, read_reports, write_labels
    from .labeler import CheXpertLabeler

    infer_format(args.out, args.format)  # fail on a bad output name before the work
    ids, reports = read_reports(args.reports, args.input_format)
    labeler = CheXpertLabeler(impression_only=args.impression_only)
    started = time.perf_counter()
    labels = labeler.label_batch(reports, progress=not args.no_progress)
    elapsed = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fmt = write_labels(args.out, ids, reports, labels, args.format)
    rate = len(reports) / elapsed if elapsed > 0 else float("inf")
    print(f"labelled {len(reports)} reports in {elapsed:.2f} s ({rate:.0f} reports/s); wrote {fmt} to {args.out}")
    return 0
