"""Recipes: a method's training as an ordered list of named stages.

Each stage reads and writes artifacts in the run folder and, when it finishes, records its result in
`RUN_DIR/stages/<name>.json`. Running a recipe again with `resume=True` skips finished stages (their recorded
results are handed to later stages) and resumes the unfinished one, so multi-stage methods (XProNet's prototype
initialisation, ITHN's neighbour mining, ASGK's three stages, ...) can add stages before or after `train`.
`stages=[...]` runs only the named stages (again, even when finished): one stage re-run alone.
R2Gen and R2GenCMN have one stage, `train`; XProNet has `labels`, `prototypes`, `train` (`hf_rrg.xpronet.recipe`).
"""

from __future__ import annotations

import json
import os
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError, TrainingConfig

STAGES_DIR = "stages"


@dataclass
class StageContext:
    """What a stage sees: the config, the run folder, whether to resume, optional in-memory datasets, and the
    results of the stages before it (`results[name]`)."""

    config: TrainingConfig
    run_dir: Path
    resume: bool = False
    datasets: Mapping[str, Any] | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def artifact(self, name: str) -> Path:
        """Path of an artifact (file or folder) in the run folder."""
        return self.run_dir / name


@dataclass(frozen=True)
class Stage:
    """A named step; `run(context)` returns a JSON-serialisable result (or None)."""

    name: str
    run: Callable[[StageContext], dict[str, Any] | None]


@dataclass(frozen=True)
class Recipe:
    """A method's training: stages in order."""

    name: str
    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        names = [stage.name for stage in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"recipe {self.name!r} has duplicate stage names {names}")


def _stage_file(run_dir: Path, name: str) -> Path:
    return run_dir / STAGES_DIR / f"{name}.json"


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def run_recipe(
    recipe: Recipe, context: StageContext, stages: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Run the stages in order; with `context.resume`, finished stages are skipped. With `stages`, only those
    stages run (finished or not; the recorded results of the others are handed on). Returns every stage's result."""
    names = [stage.name for stage in recipe.stages]
    unknown = [name for name in stages or () if name not in names]
    if unknown:
        raise ValueError(f"recipe {recipe.name!r} has no stage(s) {unknown}; its stages are {names}")
    for stage in recipe.stages:
        done = _stage_file(context.run_dir, stage.name)
        selected = stages is None or stage.name in stages
        if not selected or (stages is None and context.resume and done.is_file()):
            if done.is_file():
                context.results[stage.name] = json.loads(done.read_text(encoding="utf-8"))
            continue
        result = stage.run(context) or {}
        context.results[stage.name] = result
        if _is_main_process():
            done.parent.mkdir(parents=True, exist_ok=True)
            tmp = done.with_name(f".tmp_{done.name}")
            tmp.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
            os.replace(tmp, done)
    return context.results


def fit_summary(result: Any) -> dict[str, Any]:
    """The JSON record of a `FitResult` that a `train` stage returns."""
    return {
        "best_epoch": result.best_epoch,
        "best_metric": result.best_metric,
        "val_metric": result.val_metric,
        "epochs_trained": result.epochs_trained,
        "test": result.test_metrics,
        "model_dir": str(result.model_dir) if result.model_dir else None,
    }


def train_stage(context: StageContext) -> dict[str, Any]:
    """The `train` stage: `fit` with the context's config, run folder and resume flag."""
    from .loop import fit

    result = fit(context.config, context.run_dir, resume=context.resume, datasets=context.datasets)
    return fit_summary(result)


def _plain_train_stage(context: StageContext) -> dict[str, Any]:
    """`train_stage` for methods without recipe options or report-derived model inputs (refuses settings that
    would otherwise be silently ignored)."""
    config = context.config
    if config.recipe_options:
        raise ConfigError(
            f"recipe_options {sorted(config.recipe_options)} are not used by the {config.method!r} recipe (it has "
            "only the train stage); remove them"
        )
    if config.evaluation.use_reference_labels:
        raise ConfigError(
            f"evaluation.use_reference_labels applies to models that read report-derived labels (xpronet); "
            f"{config.method!r} has none. Remove the setting."
        )
    return train_stage(context)


def single_stage_recipe(name: str) -> Recipe:
    return Recipe(name, (Stage("train", _plain_train_stage),))


def _lazy_recipe(module: str, factory: str) -> Callable[[], Recipe]:
    """A recipe factory that imports `module` only when the recipe is asked for."""
    return lambda: getattr(importlib.import_module(module), factory)()


RECIPES: dict[str, Callable[[], Recipe]] = {
    "r2gen": lambda: single_stage_recipe("r2gen"),
    "r2gencmn": lambda: single_stage_recipe("r2gencmn"),
    "xpronet": _lazy_recipe("hf_rrg.xpronet.recipe", "xpronet_recipe"),
    "asgk": _lazy_recipe("hf_rrg.asgk.recipe", "asgk_recipe"),
    "dcrrg": _lazy_recipe("hf_rrg.dcrrg.recipe", "dcrrg_recipe"),
    "ithn": _lazy_recipe("hf_rrg.ithn.recipe", "ithn_recipe"),
    "coatt": _lazy_recipe("hf_rrg.coatt.recipe", "coatt_recipe"),
}


def register_recipe(name: str, factory: Callable[[], Recipe]) -> None:
    """Make `factory()` the recipe of method (or recipe name) `name`."""
    RECIPES[name] = factory


def get_recipe(name: str) -> Recipe:
    """The recipe named `name` (a method's model type, or `config.recipe`)."""
    try:
        return RECIPES[name]()
    except KeyError:
        raise ValueError(f"no training recipe named {name!r}; known recipes: {sorted(RECIPES)}") from None


def run_training(
    config: TrainingConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    datasets: Mapping[str, Any] | None = None,
    stages: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run the recipe of `config` (`config.recipe`, else `config.method`) in `run_dir` (only `stages` if given)."""
    recipe = get_recipe(config.recipe or config.method)
    context = StageContext(config=config, run_dir=Path(run_dir), resume=resume, datasets=datasets)
    return run_recipe(recipe, context, stages)


__all__ = [
    "RECIPES",
    "Recipe",
    "Stage",
    "StageContext",
    "fit_summary",
    "get_recipe",
    "register_recipe",
    "run_recipe",
    "run_training",
    "single_stage_recipe",
    "train_stage",
]
