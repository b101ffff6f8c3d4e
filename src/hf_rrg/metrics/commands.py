"""`hf-rrg evaluate`: score a predictions JSONL file, several seeds' files, or two systems against each other."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import EvaluationInputError

_METRIC_CHOICES = ("bleu", "rouge_l", "cider_d", "cider", "meteor", "ce", "bertscore", "f1chexbert", "radgraph",
                   "ratescore")
DEFAULT_CLI_METRICS = ("bleu", "rouge_l", "cider_d", "meteor", "ce")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's commands to the `hf-rrg` parser."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score generated reports (BLEU, ROUGE-L, CIDEr-D, METEOR, clinical efficacy, learned metrics)",
        description=(
            "Score a JSONL file whose lines hold `prediction`, `reference` (a string or a list of strings) and "
            "optionally `id`. Writes all scores as JSON (to --out, else stdout) and prints a readable table."
        ),
    )
    parser.add_argument("predictions", nargs="?", type=Path, help="predictions JSONL file")
    parser.add_argument("--runs", nargs="+", type=Path, metavar="JSONL",
                        help="several runs (e.g. seeds) of the same studies: mean ± std (sample std, ddof=1)")
    parser.add_argument("--metrics", default=None,
                        help=f"comma-separated, from {','.join(_METRIC_CHOICES)} "
                             f"(default: {','.join(DEFAULT_CLI_METRICS)})")
    parser.add_argument(
        "--protocol", default="default", choices=("default", "r2gen", "chinese"),
        help="which strings are scored (docs/metrics.md). default: the texts as given (or cleaned with --cleaner, "
             "or --tokenizer's cleaner), references never cut. r2gen: as the R2Gen family's papers scored, needs "
             "--tokenizer and --max-seq-length (out-of-vocabulary words become <unk>, references cut to "
             "max_seq_length - 1 tokens). chinese: one token per Chinese character, Latin words and numbers whole",
    )
    parser.add_argument("--tokenizer", type=Path, metavar="DIR", help="the model's saved tokenizer directory")
    parser.add_argument("--max-seq-length", type=int, help="protocol r2gen: the model's max_seq_length")
    parser.add_argument("--cleaner", help="protocol default: a report-cleaner preset applied to both sides")
    parser.add_argument("--ptb", action="store_true", help="protocol default: pycocoevalcap's PTB tokenizer (Java)")
    parser.add_argument("--uncertain", type=int, choices=(0, 1), default=0,
                        help="clinical efficacy: map uncertain labels to 0 (R2Gen) or 1 (CheXbert scorers)")
    stats = parser.add_argument_group("uncertainty and significance")
    stats.add_argument("--ci", action="store_true",
                       help="95%% bootstrap confidence interval of every score (studies resampled, corpus scores "
                            "recomputed per resample)")
    stats.add_argument("--compare", type=Path, metavar="B.jsonl",
                       help="paired approximate randomization and paired bootstrap: PREDICTIONS (A) against B")
    stats.add_argument("--resamples", type=int, default=1000,
                       help="bootstrap resamples and randomization trials (default: %(default)s)")
    stats.add_argument("--seed", type=int, default=0, help="seed of the resampling (default: %(default)s)")
    stats.add_argument("--level", type=float, default=0.95, help="interval coverage (default: %(default)s)")
    learned = parser.add_argument_group("learned metrics (weights: a Hub id, fetched into the cache, or a local path)")
    learned.add_argument("--bertscore-model", help="BERTScore model (default: roberta-large, as bert-score)")
    learned.add_argument("--bertscore-layers", type=int, help="BERTScore layer (default: bert-score's for the model)")
    learned.add_argument("--bertscore-idf", action="store_true", help="BERTScore idf weighting over the references")
    learned.add_argument("--bertscore-rescale", action="store_true", help="BERTScore baseline rescaling")
    learned.add_argument("--bertscore-baseline", help="BERTScore baseline file (LAYER,P,R,F) for --bertscore-rescale")
    learned.add_argument("--chexbert-weights", help="chexbert.pth, or a folder with it (default: StanfordAIMI/RRG_scorers)")
    learned.add_argument("--chexbert-tokenizer", help="CheXbert's vocabulary (default: bert-base-uncased)")
    learned.add_argument("--radgraph-weights", help="RadGraph archive or folder (default: StanfordAIMI/RRG_scorers)")
    learned.add_argument("--radgraph-model", choices=("radgraph", "radgraph-xl"), default="radgraph",
                         help="RadGraph variant (default radgraph)")
    learned.add_argument("--ratescore-ner", help="RaTEScore entity model (default: Angelakeke/RaTE-NER-Deberta)")
    learned.add_argument("--ratescore-encoder", help="RaTEScore synonym encoder (default: FremyCompany/BioLORD-2023-C)")
    learned.add_argument("--device", help="device of the learned metrics (default: cuda if available, else cpu)")
    parser.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    parser.add_argument("--into", type=Path, metavar="METRICS_JSON",
                        help="also merge the scores (test section), intervals (test_ci) and skipped metrics into a "
                             "run's metrics.json; a score already there must agree")
    parser.set_defaults(func=run_evaluate)


# ---- reading and checking prediction files ----


@dataclass
class PredictionFile:
    """One predictions JSONL file: per study its id (None when the file has none), prediction and references."""

    path: Path
    ids: list[Any]
    predictions: list[str]
    references: list[list[str]]


def _decoded_lines(path: Path):
    """(line number, text) of each line; bytes that are not UTF-8 name the file and line."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise EvaluationInputError(
                    f"{path}: line {number} is not UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1} "
                    "cannot be decoded); save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT`"
                ) from None


def _parse_line(path: Path, number: int, line: str) -> tuple[Any, str, list[str]]:
    from .inputs import has_words

    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise EvaluationInputError(f"{path}:{number}: not valid JSON ({error.msg})") from None
    if not isinstance(record, dict) or "prediction" not in record or "reference" not in record:
        raise EvaluationInputError(f"{path}:{number}: each line needs the keys 'prediction' and 'reference'")
    prediction, reference = record["prediction"], record["reference"]
    if prediction is None:
        prediction = ""
    if not isinstance(prediction, str):
        raise EvaluationInputError(f"{path}:{number}: 'prediction' must be a string, got {type(prediction).__name__}")
    refs = [reference] if isinstance(reference, str) else reference
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r.strip() for r in refs):
        raise EvaluationInputError(
            f"{path}:{number}: empty or invalid 'reference' ({reference!r:.60}); every line needs a non-empty "
            "reference report (a string or a list of strings)"
        )
    if not all(has_words(r) for r in refs):
        raise EvaluationInputError(f"{path}:{number}: 'reference' has no words ({reference!r:.60}); supply the report")
    return record.get("id"), prediction, refs


def read_prediction_file(path: Path) -> PredictionFile:
    """Ids, predictions and reference lists of a JSONL file; errors name the file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"predictions file {path} does not exist")
    result = PredictionFile(path, [], [], [])
    seen: dict[str, int] = {}
    for number, line in _decoded_lines(path):
        if not line.strip():
            continue
        study_id, prediction, refs = _parse_line(path, number, line)
        if study_id is not None:
            key = json.dumps(study_id)
            if key in seen:
                raise EvaluationInputError(
                    f"{path}:{number}: id {study_id!r} already appeared on line {seen[key]}; each study must "
                    "appear once (remove the duplicate)"
                )
            seen[key] = number
        result.ids.append(study_id)
        result.predictions.append(prediction)
        result.references.append(refs)
    if not result.predictions:
        raise EvaluationInputError(f"{path} holds no predictions")
    return result


def read_predictions(path: Path) -> tuple[list[str], list[list[str]]]:
    """Predictions and reference lists from a JSONL file; errors name the file and line."""
    loaded = read_prediction_file(path)
    return loaded.predictions, loaded.references


def check_same_studies(first: PredictionFile, other: PredictionFile) -> None:
    """Refuse two files that do not hold the same studies in the same order (by id, else by reference)."""
    if len(first.ids) != len(other.ids):
        raise EvaluationInputError(
            f"{other.path} holds {len(other.ids)} studies but {first.path} holds {len(first.ids)}; files that are "
            "averaged or compared must hold the same studies in the same order"
        )
    with_ids = all(i is not None for i in first.ids + other.ids)
    for index, (a, b) in enumerate(zip(first.ids, other.ids)):
        if with_ids and a != b:
            raise EvaluationInputError(
                f"{first.path} and {other.path} differ at study {index + 1}: id {a!r} vs {b!r}; they must hold the "
                "same studies in the same order"
            )
        if first.references[index] != other.references[index]:
            what = f"id {a!r}" if with_ids else f"line {index + 1}"
            raise EvaluationInputError(
                f"{first.path} and {other.path} have different references at {what}; they must hold the same "
                "studies in the same order" + ("" if with_ids else " (add an 'id' to each line to name them)")
            )


# ---- scoring ----


def _learned_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    def pick(**values: Any) -> dict[str, Any]:
        return {key: value for key, value in values.items() if value not in (None, False)}

    return {
        "bertscore": pick(model=args.bertscore_model, num_layers=args.bertscore_layers, idf=args.bertscore_idf,
                          rescale_with_baseline=args.bertscore_rescale, baseline_path=args.bertscore_baseline,
                          device=args.device),
        "f1chexbert": pick(weights=args.chexbert_weights, tokenizer=args.chexbert_tokenizer, device=args.device),
        "radgraph": pick(weights=args.radgraph_weights, model_type=args.radgraph_model),
        "ratescore": pick(ner_model=args.ratescore_ner, encoder_model=args.ratescore_encoder, device=args.device),
    }


def _evaluate(predictions: list[str], references: list[list[str]], args: argparse.Namespace, tokenizer: Any,
              metrics: list[str], statistics: bool):
    from .evaluate_reports import evaluate_detailed

    return evaluate_detailed(
        predictions, references, metrics=metrics, protocol=args.protocol, tokenizer=tokenizer,
        max_seq_length=args.max_seq_length, cleaner=args.cleaner, ptb=args.ptb, uncertain=args.uncertain,
        learned=_learned_options(args), skip_unavailable=True, statistics=statistics,
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


def format_table(scores: dict[str, float], std: dict[str, float] | None = None,
                 intervals: dict[str, dict[str, float]] | None = None) -> str:
    """A two-column text table of scores (``mean ± std`` with `std`, ``value [low, high]`` with `intervals`)."""
    width = max(len(name) for name in scores) if scores else 10
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 17}"]
    for name, value in scores.items():
        text = f"{value:.4f}" + (f" ± {std[name]:.4f}" if std is not None else "")
        if intervals and name in intervals:
            text += f" [{intervals[name]['low']:.4f}, {intervals[name]['high']:.4f}]"
        lines.append(f"{name:<{width}}  {text}")
    return "\n".join(lines)


def format_comparison(comparison: dict[str, dict[str, float]]) -> str:
    """A table of A, B, A - B and the two p-values per score."""
    width = max(len(name) for name in comparison)
    lines = [f"{'metric':<{width}}  {'A':>8}  {'B':>8}  {'A - B':>8}  {'p (rand.)':>9}  {'p (boot.)':>9}"]
    for name, row in comparison.items():
        lines.append(f"{name:<{width}}  {row['a']:8.4f}  {row['b']:8.4f}  {row['difference']:8.4f}  "
                     f"{row['p_randomization']:9.4f}  {row['p_bootstrap']:9.4f}")
    return "\n".join(lines)


def _metric_list(args: argparse.Namespace) -> list[str]:
    if args.metrics is None:
        return list(DEFAULT_CLI_METRICS)
    metrics = [name.strip() for name in args.metrics.split(",") if name.strip()]
    unknown = [name for name in metrics if name not in _METRIC_CHOICES]
    if unknown:
        raise EvaluationInputError(f"unknown metric(s) {unknown} in --metrics; choose from {','.join(_METRIC_CHOICES)}")
    return metrics


def _check_arguments(args: argparse.Namespace, files: list[Path]) -> None:
    if not files:
        raise EvaluationInputError("give a predictions JSONL file, or several with --runs a.jsonl b.jsonl ...")
    if args.compare is not None and (args.runs or args.predictions is None):
        raise EvaluationInputError("--compare B.jsonl compares one predictions file (A) with B; not with --runs")
    if args.ci and len(files) > 1:
        raise EvaluationInputError("--ci gives the interval of one predictions file; use it without --runs")
    if args.resamples < 1:
        raise EvaluationInputError(f"--resamples must be at least 1, got {args.resamples}")
    if not 0 < args.level < 1:
        raise EvaluationInputError(f"--level must be between 0 and 1, got {args.level}")


def _single(loaded: PredictionFile, args, tokenizer, metrics) -> tuple[dict[str, Any], str, dict[str, str]]:
    from .significance import bootstrap_intervals

    result = _evaluate(loaded.predictions, loaded.references, args, tokenizer, metrics, statistics=args.ci)
    output: dict[str, Any] = {"file": str(loaded.path), "scores": result.scores, "skipped": result.skipped}
    intervals = None
    if args.ci and result.statistics:
        computed = bootstrap_intervals(result.statistics, args.resamples, args.seed, args.level)
        intervals = {name: {"low": i.low, "high": i.high, "level": i.level} for name, i in computed.items()}
        output["ci"] = intervals
        output["ci_settings"] = {"method": "percentile bootstrap over studies, corpus scores recomputed per resample",
                                 "resamples": args.resamples, "seed": args.seed, "level": args.level}
    return output, format_table(result.scores, intervals=intervals), result.skipped


def _compared(a: PredictionFile, b: PredictionFile, args, tokenizer, metrics) -> tuple[dict[str, Any], str, dict]:
    from .significance import compare_systems

    check_same_studies(a, b)
    result = _evaluate(a.predictions + b.predictions, a.references + b.references, args, tokenizer, metrics,
                       statistics=True)
    comparison = {name: asdict(row) for name, row in
                  compare_systems(result.statistics, args.resamples, args.resamples, args.seed, args.level).items()}
    output = {"a": str(a.path), "b": str(b.path), "comparison": comparison, "skipped": result.skipped,
              "compare_settings": {"tests": "paired approximate randomization; paired bootstrap (two-sided)",
                                   "trials": args.resamples, "resamples": args.resamples, "seed": args.seed}}
    return output, f"A = {a.path}\nB = {b.path}\n" + format_comparison(comparison), result.skipped


def _runs(loaded: list[PredictionFile], args, tokenizer, metrics) -> tuple[dict[str, Any], str, dict[str, str]]:
    for other in loaded[1:]:
        check_same_studies(loaded[0], other)
    runs, skipped = [], {}
    for item in loaded:
        result = _evaluate(item.predictions, item.references, args, tokenizer, metrics, statistics=False)
        runs.append({"file": str(item.path), "scores": result.scores, "skipped": result.skipped})
        skipped.update(result.skipped)
    mean, std = aggregate_runs([run["scores"] for run in runs])
    output = {"runs": runs, "mean": mean, "std": std, "skipped": skipped}
    return output, f"{len(runs)} runs, mean ± sample std\n" + format_table(mean, std), skipped


def merge_into_metrics(path: Path, scores: dict[str, float], intervals: dict | None, skipped: dict[str, str],
                       settings: dict[str, Any]) -> None:
    """Add scores to the ``test`` section of a run's metrics.json (refusing disagreeing values), with intervals."""
    metrics = {}
    if path.is_file():
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise EvaluationInputError(f"{path} is not valid JSON ({error.msg}); fix or delete it") from None
    test = metrics.setdefault("test", {})
    for name, value in scores.items():
        old = test.get(name)
        if isinstance(old, (int, float)) and not math.isclose(old, value, rel_tol=1e-9, abs_tol=1e-12):
            raise EvaluationInputError(
                f"{path} already has test {name} = {old!r}, but this evaluation gives {value!r}: evaluate with the "
                "run's protocol (e.g. --protocol r2gen --tokenizer RUN/model --max-seq-length N) or write with --out"
            )
        test[name] = value
    if intervals:
        metrics.setdefault("test_ci", {}).update(intervals)
    if skipped:
        metrics.setdefault("skipped_metrics", {}).update(skipped)
    metrics.setdefault("evaluations", []).append(settings)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(metrics, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def run_evaluate(args: argparse.Namespace) -> int:
    """The `hf-rrg evaluate` command."""
    files = list(args.runs or [])
    if args.predictions is not None:
        files.insert(0, args.predictions)
    _check_arguments(args, files)
    metrics = _metric_list(args)
    tokenizer = None
    if args.tokenizer is not None:
        from .protocols import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer)
    settings = {"protocol": args.protocol, "metrics": metrics, "tokenizer": str(args.tokenizer) if args.tokenizer else None,
                "max_seq_length": args.max_seq_length, "cleaner": args.cleaner, "ptb": args.ptb,
                "uncertain": args.uncertain}
    loaded = [read_prediction_file(path) for path in files]
    if args.compare is not None:
        output, table, skipped = _compared(loaded[0], read_prediction_file(args.compare), args, tokenizer, metrics)
    elif len(loaded) == 1:
        output, table, skipped = _single(loaded[0], args, tokenizer, metrics)
    else:
        output, table, skipped = _runs(loaded, args, tokenizer, metrics)
    output = {"settings": settings, **output}
    text = json.dumps(output, indent=2, allow_nan=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
        print(table)
        print(f"scores written to {args.out}")
    else:
        print(text)
        print(table, file=sys.stderr)
    if args.into is not None:
        if "scores" not in output:
            raise EvaluationInputError("--into merges the scores of one predictions file (not --runs or --compare)")
        merge_into_metrics(args.into, output["scores"], output.get("ci"), skipped,
                           {**settings, "file": output["file"], **({"ci": output["ci_settings"]} if "ci" in output else {})})
        print(f"scores merged into {args.into}")
    for name, reason in skipped.items():
        print(f"hf-rrg evaluate: {name} skipped: {reason}", file=sys.stderr)
    return 1 if skipped and args.metrics is not None else 0
