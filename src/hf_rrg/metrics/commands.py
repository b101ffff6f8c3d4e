"""`hf-rrg evaluate`: score a predictions JSONL file (or several seeds' files) and print a table."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

_METRIC_CHOICES = ("bleu", "rouge_l", "cider_d", "cider", "meteor", "ce")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's commands to the `hf-rrg` parser."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score generated reports (BLEU, ROUGE-L, CIDEr-D, METEOR, clinical efficacy)",
        description=(
            "Score a JSONL file whose lines hold `prediction` and `reference` (a string or a list of strings). "
            "Writes all scores as JSON (to --out, else stdout) and prints a readable table."
        ),
    )
    parser.add_argument("predictions", nargs="?", type=Path, help="predictions JSONL file")
    parser.add_argument("--runs", nargs="+", type=Path, metavar="JSONL",
                        help="several runs (e.g. seeds) to aggregate as mean ± std (sample std, ddof=1)")
    parser.add_argument("--metrics", default="bleu,rouge_l,cider_d,meteor,ce",
                        help=f"comma-separated, from {','.join(_METRIC_CHOICES)} (default: %(default)s)")
    parser.add_argument("--protocol", default="default", choices=("default", "r2gen", "chinese"))
    parser.add_argument("--tokenizer", type=Path, metavar="DIR", help="the model's saved tokenizer directory")
    parser.add_argument("--max-seq-length", type=int, help="protocol r2gen: the model's max_seq_length")
    parser.add_argument("--cleaner", help="protocol default: a report-cleaner preset applied to both sides")
    parser.add_argument("--ptb", action="store_true", help="protocol default: pycocoevalcap's PTB tokenizer (Java)")
    parser.add_argument("--uncertain", type=int, choices=(0, 1), default=0,
                        help="clinical efficacy: map uncertain labels to 0 (R2Gen) or 1 (CheXbert scorers)")
    parser.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    parser.set_defaults(func=run_evaluate)


def read_predictions(path: Path) -> tuple[list[str], list[list[str]]]:
    """Predictions and reference lists from a JSONL file; errors name the file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"predictions file {path} does not exist")
    predictions: list[str] = []
    references: list[list[str]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict) or "prediction" not in record or "reference" not in record:
                raise ValueError(f"{path}:{number}: each line needs the keys 'prediction' and 'reference'")
            prediction, reference = record["prediction"], record["reference"]
            if prediction is None:
                prediction = ""
            if not isinstance(prediction, str):
                raise ValueError(f"{path}:{number}: 'prediction' must be a string, got {type(prediction).__name__}")
            refs = [reference] if isinstance(reference, str) else reference
            if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r.strip() for r in refs):
                raise ValueError(
                    f"{path}:{number}: empty or invalid 'reference' ({reference!r:.60}); every line needs a non-empty "
                    "reference report (a string or a list of strings)"
                )
            predictions.append(prediction)
            references.append(refs)
    if not predictions:
        raise ValueError(f"{path} holds no predictions")
    return predictions, references


def _score_file(path: Path, args: argparse.Namespace, tokenizer: Any, metrics: list[str]) -> dict[str, float]:
    from .evaluate_reports import evaluate_reports

    predictions, references = read_predictions(path)
    return evaluate_reports(
        predictions, references, metrics=metrics, protocol=args.protocol, tokenizer=tokenizer,
        max_seq_length=args.max_seq_length, cleaner=args.cleaner, ptb=args.ptb, uncertain=args.uncertain,
    )


def aggregate_runs(runs: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample standard deviation (ddof=1; 0 for a single run) of each score over runs."""
    names = [name for name in runs[0] if all(name in run for run in runs)]
    mean, std = {}, {}
    for name in names:
        values = [run[name] for run in runs]
        mean[name] = sum(values) / len(values)
        std[name] = (
            math.sqrt(sum((v - mean[name]) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        )
    return mean, std


def format_table(scores: dict[str, float], std: dict[str, float] | None = None) -> str:
    """A two-column text table of scores (``mean ± std`` when `std` is given)."""
    width = max(len(name) for name in scores) if scores else 10
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 17}"]
    for name, value in scores.items():
        text = f"{value:.4f}" + (f" ± {std[name]:.4f}" if std is not None else "")
        lines.append(f"{name:<{width}}  {text}")
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace) -> int:
    """The `hf-rrg evaluate` command."""
    files = list(args.runs or [])
    if args.predictions is not None:
        files.insert(0, args.predictions)
    if not files:
        raise ValueError("give a predictions JSONL file, or several with --runs a.jsonl b.jsonl ...")
    metrics = [name.strip() for name in args.metrics.split(",") if name.strip()]
    unknown = [name for name in metrics if name not in _METRIC_CHOICES]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown} in --metrics; choose from {','.join(_METRIC_CHOICES)}")
    tokenizer = None
    if args.tokenizer is not None:
        from .protocols import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer)
    settings = {"protocol": args.protocol, "metrics": metrics, "tokenizer": str(args.tokenizer) if args.tokenizer else None,
                "max_seq_length": args.max_seq_length, "cleaner": args.cleaner, "ptb": args.ptb,
                "uncertain": args.uncertain}
    runs = [{"file": str(path), "scores": _score_file(path, args, tokenizer, metrics)} for path in files]
    if len(runs) == 1:
        output: dict[str, Any] = {"settings": settings, **runs[0]}
        table = format_table(runs[0]["scores"])
    else:
        mean, std = aggregate_runs([run["scores"] for run in runs])
        output = {"settings": settings, "runs": runs, "mean": mean, "std": std}
        table = f"{len(runs)} runs, mean ± sample std\n" + format_table(mean, std)
    text = json.dumps(output, indent=2, allow_nan=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
        print(table)
        print(f"scores written to {args.out}")
    else:
        print(text)
        print(table, file=sys.stderr)
    return 0
