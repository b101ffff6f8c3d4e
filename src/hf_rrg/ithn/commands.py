"""`hf-rrg ithn mine`: ITHN's prior hard negatives (§3.2) as a neighbours file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..command_groups import command_group
from ..data.commands import add_split_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `ithn` command group to the `hf-rrg` parser."""
    commands = command_group(subparsers, "ithn", "ITHN stages: hard-negative mining", metavar="STAGE")
    mine = commands.add_parser(
        "mine",
        help="each report's nearest neighbours among the split's reports (§3.2), written as a neighbours file",
        description="Embed every report of a split with a text encoder (a Hugging Face encoder id or local folder, "
        "e.g. RadBERT, or 'tfidf'), find each report's top-k most similar other reports by exact cosine search, "
        "and write {id: [[neighbour_id, cosine], ...]} plus how it was mined (JSON). SOURCE is a dataset builder "
        "name (iu_xray, mimic_cxr, demo, ...) or an R2Gen-style annotation.json (reports only, no images needed).",
    )
    mine.add_argument("source", help="builder name, or a path to an R2Gen annotation.json")
    add_split_arguments(mine, "train")
    mine.add_argument("--out", type=Path, required=True, help="neighbours file to write (.json)")
    mine.add_argument("--encoder", default="tfidf", help="Hugging Face encoder id / local folder, or tfidf")
    mine.add_argument("--pooling", choices=("mean", "cls"), default="mean", help="token pooling of the encoder")
    mine.add_argument("--top-k", type=int, default=10, help="neighbours per report (default 10)")
    mine.add_argument("--exclude-same-patient", action="store_true", help="never pair reports of one patient")
    mine.add_argument("--patient-column", default="patient_id", help="dataset column with the patient id")
    mine.add_argument("--exclude-identical", action="store_true", help="never pair reports with identical text")
    mine.add_argument("--batch-size", type=int, default=64, help="encoder batch size")
    mine.add_argument("--max-length", type=int, default=256, help="encoder tokens per report")
    mine.add_argument("--block-size", type=int, default=4096, help="rows per block of the exact search")
    mine.add_argument("--limit", type=int, default=None, help="use only the first N reports (trials)")
    mine.add_argument("--device", default="cpu", help="device of the encoder (default cpu)")
    mine.add_argument("--no-progress", action="store_true", help="hide progress bars")
    mine.set_defaults(func=run_mine)

    backbone = commands.add_parser(
        "export-backbone",
        help="export the plain backbone of an ITHN run (what ITHN is at inference) as a Hub repository",
        description="Write the backbone (e.g. R2GenCMN, XProNet) of a trained ITHN model, with the processor, the "
        "run's metrics and training config and a model card, as a self-contained Hub model folder.",
    )
    backbone.add_argument("source", type=Path, help="ITHN run folder (or ITHN model folder)")
    backbone.add_argument("out", type=Path, help="folder to write")
    backbone.add_argument("--repo-id", default=None, help="org/name the folder will be pushed to")
    backbone.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    backbone.set_defaults(func=run_export_backbone)


def _annotation_rows(path: Path, split: str) -> dict[str, list[Any]]:
    """ids and reports of one split of an R2Gen annotation.json (`val`/`test` and a four-space test key accepted)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    aliases = {"validation": ("val", "validation"), "test": ("test", "")}.get(split, (split,))
    keys = [key for key in data if key in aliases or key.strip() in aliases]
    if not keys:
        raise ValueError(f"{path} has no split {split!r}; its keys are {[k for k in data]}")
    entries = data[keys[0]]
    return {
        "id": [str(entry["id"]) for entry in entries],
        "report": [entry["report"] for entry in entries],
        "patient_id": [str(entry.get("patient_id", entry["id"])) for entry in entries],
    }


def _dataset_rows(args: argparse.Namespace) -> dict[str, list[Any]]:
    source = Path(args.source)
    if source.suffix == ".json" or source.is_file():
        return _annotation_rows(source, args.split)
    from ..data.commands import load_split

    split = load_split(args.source, args.data_dir, args.config, args.set, args.split)
    wanted = [c for c in ("id", "report", args.patient_column) if c in split.column_names]
    return {column: list(split.select_columns(wanted)[column]) for column in wanted}


def run_mine(args: argparse.Namespace) -> int:
    from .mining import mine_hard_negatives

    rows = _dataset_rows(args)
    if args.limit is not None:
        rows = {key: value[: args.limit] for key, value in rows.items()}
    if args.exclude_same_patient and args.patient_column not in rows:
        raise ValueError(f"--exclude-same-patient: the split has no {args.patient_column!r} column")
    result = mine_hard_negatives(
        rows["id"], rows["report"], encoder=args.encoder, pooling=args.pooling, top_k=args.top_k,
        patient_ids=rows[args.patient_column] if args.exclude_same_patient else None,
        exclude_identical=args.exclude_identical, batch_size=args.batch_size, max_length=args.max_length,
        block_size=args.block_size, device=args.device, progress=not args.no_progress,
    )  # fmt: skip
    result.metadata.update(source=str(args.source), split=args.split)
    path = result.write(args.out)
    meta = result.metadata
    print(f"embedding {meta['seconds_embedding']:.1f} s, search {meta['seconds_search']:.1f} s "
          f"({meta['reports']} reports, {meta['embedding_dim']}-d)")  # fmt: skip
    print(f"wrote the {meta['top_k']} nearest neighbours of {len(result.neighbours)} reports to {path}")
    return 0


def run_export_backbone(args: argparse.Namespace) -> int:
    from .export import export_backbone_run

    out = export_backbone_run(args.source, args.out, repo_id=args.repo_id, overwrite=args.overwrite)
    print(f"exported the backbone of {args.source} to {out}")
    return 0
