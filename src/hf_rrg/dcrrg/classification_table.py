"""The result of DCCLIP's image classification (the paper's Table 3) as a file pair: `table3.json` (every run's
per-observation AUROC and the settings; the source of truth) and `table3.md` (the table as Markdown, AUROC in
percent as the paper prints it). `read_table` reads the JSON back into the same `ClassificationTable`."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TABLE_JSON = "table3.json"
TABLE_MARKDOWN = "table3.md"
MODE_TITLES = {
    "linear-probe": "linear probe (image encoder frozen)",
    "fine-tune": "fine-tuning (image encoder trained)",
}


def percent(value: float | None) -> str:
    """An AUROC as the paper prints it (x 100, one decimal); `n/a` where undefined."""
    return "n/a" if value is None else f"{100 * value:.1f}"


def _mean(values: list[float | None]) -> float | None:
    """Mean of the defined values (None where AUROC is undefined: a class absent from the test split)."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


@dataclass
class RunResult:
    """One run: its seed, how many train studies it drew, the epoch kept (counted from 1), and the test AUROC per
    observation (None: undefined, one class absent)."""

    seed: int
    train_samples: int
    best_epoch: int | None
    auroc: dict[str, float | None]

    @property
    def mean_auroc(self) -> float | None:
        return _mean(list(self.auroc.values()))


@dataclass
class ClassificationTable:
    """Table 3 for one (model, mode, train fraction): the runs and what they were run on."""

    mode: str
    model: str
    dataset: str
    train_fraction: float
    observations: list[str]
    test_samples: int
    selection: str
    runs: list[RunResult] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def auroc(self, observation: str) -> float | None:
        """Mean over the runs of one observation's AUROC."""
        return _mean([run.auroc.get(observation) for run in self.runs])

    @property
    def mean_auroc(self) -> float | None:
        """Mean over the runs of each run's mean AUROC (the table's summary number)."""
        return _mean([run.mean_auroc for run in self.runs])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["auroc"] = {name: self.auroc(name) for name in self.observations}
        data["mean_auroc"] = self.mean_auroc
        for run, result in zip(data["runs"], self.runs):
            run["mean_auroc"] = result.mean_auroc
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassificationTable:
        fields = {key: data[key] for key in cls.__dataclass_fields__ if key != "runs"}
        runs = [RunResult(**{key: run[key] for key in RunResult.__dataclass_fields__}) for run in data["runs"]]
        return cls(**fields, runs=runs)

    def markdown(self) -> str:
        """The table: one row per observation, one column per run and the mean, AUROC x 100."""
        runs = [f"run {i + 1}" for i in range(len(self.runs))]
        summary = (f"Model `{self.model}` on `{self.dataset}`: {self.train_fraction:.0%} of the train split per run, "
                   f"AUROC x 100 on the test split ({self.test_samples} studies; uncertain labels excluded; n/a: one "
                   f"class absent). Epoch kept: {self.selection}.")  # fmt: skip
        lines = [
            f"# DCCLIP image classification (DCRRG Table 3): {MODE_TITLES.get(self.mode, self.mode)}",
            "",
            summary,
            "",
            "| Observation | " + " | ".join([*runs, "mean"]) + " |",
            "|---|" + "---:|" * (len(runs) + 1),
        ]
        for name in self.observations:
            cells = [percent(run.auroc.get(name)) for run in self.runs] + [percent(self.auroc(name))]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        cells = [percent(run.mean_auroc) for run in self.runs] + [percent(self.mean_auroc)]
        lines.append("| **Mean AUROC** | " + " | ".join(f"**{cell}**" for cell in cells) + " |")
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> tuple[Path, Path]:
        """`folder/table3.json` and `folder/table3.md`."""
        folder.mkdir(parents=True, exist_ok=True)
        data = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        (folder / TABLE_JSON).write_text(data + "\n", encoding="utf-8")
        (folder / TABLE_MARKDOWN).write_text(self.markdown(), encoding="utf-8")
        return folder / TABLE_JSON, folder / TABLE_MARKDOWN


def read_table(path: str | Path) -> ClassificationTable:
    """The table in `path` (a `table3.json` or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / TABLE_JSON
    try:
        return ClassificationTable.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: run `hf-rrg dcrrg classify` with --out {path.parent}") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a table written by `hf-rrg dcrrg classify` ({error})") from None


def finite_or_none(value: float) -> float | None:
    """An AUROC for the table: None where it is undefined (NaN)."""
    return None if math.isnan(value) else float(value)


__all__ = [
    "TABLE_JSON",
    "TABLE_MARKDOWN",
    "ClassificationTable",
    "RunResult",
    "finite_or_none",
    "percent",
    "read_table",
]
