"""What a finished training run prints last: a few test studies with their generated and reference reports, the
test scores, and where the run's outputs went.

`format_run_summary(RUN_DIR)` reads only `RUN_DIR/predictions.jsonl` and `RUN_DIR/metrics.json` (plus, to show
image paths, the run's `config.yaml` and the dataset's `metadata.jsonl` when its builder ships an ImageFolder
`data/` folder, as `demo` does), so it works on any finished run folder, not only at the end of `fit`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hf_rrg.text_files import jsonl_records

PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
#: Other outputs of a run, listed when they exist: (label, path relative to the run folder).
RUN_OUTPUTS = (
    ("metrics", METRICS_FILE),
    ("predictions", PREDICTIONS_FILE),
    ("model", "model"),
    ("curves", "training_curves.png"),
    ("heat maps", "heatmaps"),
    ("logs", "logs"),
)
UNK_TOKEN = "<unk>"


def read_predictions(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of `RUN_DIR/predictions.jsonl` (`id`, `prediction`, `reference`), in file order."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a finished training run (no test predictions)")
    records = []
    for number, record in jsonl_records(path):
        missing = [key for key in ("prediction", "reference") if key not in record]
        if missing:
            raise ValueError(f"{path} line {number} lacks {missing}; it was not written by `hf-rrg train`")
        records.append(record)
    return records


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a finished training run (no test metrics)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def example_images(run_dir: str | Path) -> dict[str, Path]:
    """id -> image file of the run's dataset, when its builder ships an ImageFolder `data/` folder (`demo`)
    and the run used that folder; `{}` otherwise (the summary then shows ids only)."""
    config_path = Path(run_dir) / "config.yaml"
    if not config_path.is_file():
        return {}
    import yaml

    from hf_rrg.resources import resource_dir

    data = (yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}).get("data") or {}
    builder = data.get("builder")
    if not isinstance(builder, str) or not builder.isidentifier() or data.get("data_dir"):
        return {}
    folder = resource_dir("datasets_scripts") / builder / "data"
    metadata = folder / "metadata.jsonl"
    if not metadata.is_file():
        return {}
    images = {}
    for line in metadata.read_text(encoding="utf-8").splitlines():
        record = json.loads(line) if line.strip() else {}
        if "id" in record and "file_name" in record:
            images[str(record["id"])] = folder / record["file_name"]
    return images


def _shown_path(path: Path) -> str:
    """`path` relative to the working directory when it lies below it (what a user types next), else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _scores(test: Mapping[str, Any]) -> str:
    shown = [
        f"{name} {value:.4f}"
        for name, value in test.items()
        if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value))
    ]
    return ", ".join(shown) or "none"


def format_run_summary(run_dir: str | Path, num_examples: int = 3) -> str:
    """The closing text of a run: the first `num_examples` test studies (image path or id, generated and
    reference report), how many distinct reports the model wrote and how many hold `<unk>`, the test scores,
    and where the metrics, predictions, model, curves (and heat maps, when a run has them) are."""
    run_dir = Path(run_dir)
    predictions = read_predictions(run_dir)
    metrics = _read_metrics(run_dir)
    images = example_images(run_dir)
    generated = [record["prediction"] for record in predictions]
    lines = [
        f"Test reports: {len(set(generated))} distinct among {len(generated)} studies, "
        f"{sum(UNK_TOKEN in text for text in generated)} with {UNK_TOKEN}; "
        f"the first {min(num_examples, len(generated))}:"
    ]
    for record in predictions[:num_examples]:
        ident = str(record.get("id", "?"))
        image = images.get(ident)
        lines.append(f"  {_shown_path(image) if image is not None else ident}")
        lines.append(f"    generated: {record['prediction']}")
        lines.append(f"    reference: {record['reference']}")
    best = metrics.get("best_epoch")
    selection = (
        f"best epoch {best} of {metrics.get('epochs_trained', '?')} by validation {metrics.get('val_metric', '?')}"
        if best is not None
        else "no validation selection"
    )
    lines.append(f"Test scores ({selection}): {_scores(metrics.get('test') or {})}")
    lines.append(f"Run folder: {_shown_path(run_dir)}")
    for label, relative in RUN_OUTPUTS:
        path = run_dir / relative
        if path.exists():
            lines.append(f"  {label + ':':<13}{_shown_path(path)}")
    if (run_dir / "model" / "config.json").is_file() and predictions:
        first = images.get(str(predictions[0].get("id")))
        target = _shown_path(first) if first is not None else "IMAGE"
        lines.append(f"Report of an image: hf-rrg generate --model {_shown_path(run_dir / 'model')} {target}")
    return "\n".join(lines)


__all__ = ["format_run_summary", "read_predictions", "example_images"]
