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
from .resume import ResumePolicy, describe_changes, prepare_run_folder

STAGES_DIR = "stages"


@dataclass
class StageContext:
    """What a stage sees: the config, the run folder, how to resume (`--resume`, `--resume-with-changes`,
    `--resume-inexact`), optional in-memory datasets, and the results of the stages before it (`results[name]`)."""

    config: TrainingConfig
    run_dir: Path
    resume: bool = False
    datasets: Mapping[str, Any] | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    resume_with_changes: bool = False
    resume_inexact: bool = False

    @property
    def policy(self) -> ResumePolicy:
        return ResumePolicy(self.resume, self.resume_with_changes, self.resume_inexact)

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
    recipe: Recipe, context: StageContext, stages: Sequence[str] | None = None,
    changes: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run the stages in order; with `context.resume`, finished stages are skipped. With `stages`, only those
    stages run (finished or not; the recorded results of the others are handed on). When a resumed run's config
    changed (`changes`, e.g. more epochs), the recipe's last stage runs again (resuming its own checkpoint) even if
    it had finished. Returns every stage's result."""
    names = [stage.name for stage in recipe.stages]
    unknown = [name for name in stages or () if name not in names]
    if unknown:
        raise ValueError(f"recipe {recipe.name!r} has no stage(s) {unknown}; its stages are {names}")
    if stages is None and context.resume:
        _reopen_last_stage(recipe, context, changes or {})
    ran = []
    for stage in recipe.stages:
        done = _stage_file(context.run_dir, stage.name)
        selected = stages is None or stage.name in stages
        if not selected or (stages is None and context.resume and done.is_file()):
            if done.is_file():
                context.results[stage.name] = _read_stage_record(done)
            continue
        result = stage.run(context) or {}
        ran.append(stage.name)
        context.results[stage.name] = result
        if _is_main_process():
            done.parent.mkdir(parents=True, exist_ok=True)
            tmp = done.with_name(f".tmp_{done.name}")
            tmp.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
            os.replace(tmp, done)
    if not ran and _is_main_process():
        print(f"Every stage of {context.run_dir} ({', '.join(names)}) has finished: nothing to resume. To train "
              "longer, raise the epochs (--set training.epochs=N) with --resume; to redo a stage, --stage NAME")  # fmt: skip
    return context.results


def _read_stage_record(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"stage record {path} is damaged ({error}); delete it to run that stage again") from None


def _reopen_last_stage(recipe: Recipe, context: StageContext, changes: Mapping[str, Any]) -> None:
    """After accepted config changes, the finished last stage resumes again (its record is removed first, so an
    interruption leaves it unfinished); earlier finished stages stay as they are, and the run says so."""
    last = _stage_file(context.run_dir, recipe.stages[-1].name)
    if not changes or not last.is_file():
        return
    if _is_main_process():
        kept = [s.name for s in recipe.stages[:-1] if _stage_file(context.run_dir, s.name).is_file()]
        print(f"Config changed since the run finished ({describe_changes(dict(changes))}): resuming stage "
              f"{recipe.stages[-1].name!r}" + (f"; finished stages {kept} are kept (re-run one with --stage NAME)"
                                                 if kept else ""))  # fmt: skip
        last.unlink()
    _barrier(context)


def _barrier(context: StageContext) -> None:
    from .runtime import distributed_state

    distributed_state(context.config).wait_for_everyone()


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


def fit_stage(context: StageContext, hooks: Any = None, config: TrainingConfig | None = None) -> dict[str, Any]:
    """A recipe's `train` stage: `fit` with the context's run folder, resume policy and datasets (and `config`, a
    recipe's completed copy of the context's), returning `fit_summary` plus the hooks' metadata as `recipe`."""
    from .loop import fit

    policy = context.policy
    result = fit(config or context.config, context.run_dir, resume=policy.resume, datasets=context.datasets,
                 hooks=hooks, resume_with_changes=policy.with_changes, resume_inexact=policy.inexact,
                 own_run_folder=False)  # fmt: skip
    summary = fit_summary(result)
    if hooks is not None and hooks.metadata:
        summary["recipe"] = hooks.metadata
    return summary


def train_stage(context: StageContext) -> dict[str, Any]:
    """The `train` stage: `fit` with the context's config, run folder and resume policy."""
    return fit_stage(context)


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
    resume_with_changes: bool = False,
    resume_inexact: bool = False,
) -> dict[str, dict[str, Any]]:
    """Run the recipe of `config` (`config.recipe`, else `config.method`) in `run_dir` (only `stages` if given).

    Before any stage: the metric names are checked, a folder holding a run is refused without `resume` (unless
    `stages` re-runs some alone), and a resumed run's config is checked against `RUN_DIR/config.yaml`
    (`hf_rrg.training.resume`)."""
    from .config_checks import check_evaluation
    from .runtime import distributed_state

    recipe = get_recipe(config.recipe or config.method)
    check_evaluation(config.evaluation, None)
    run_dir = Path(run_dir)
    context = StageContext(config=config, run_dir=run_dir, resume=resume, datasets=datasets,
                           resume_with_changes=resume_with_changes, resume_inexact=resume_inexact)  # fmt: skip
    existing = None if stages else run_dir / STAGES_DIR
    changes = prepare_run_folder(run_dir, config, context.policy, distributed_state(config), existing=existing,
                                 allow_changes=bool(stages))  # fmt: skip
    return run_recipe(recipe, context, stages, changes)


__all__ = [
    "RECIPES",
    "Recipe",
    "Stage",
    "StageContext",
    "fit_stage",
    "fit_summary",
    "get_recipe",
    "register_recipe",
    "run_recipe",
    "run_training",
    "single_stage_recipe",
    "train_stage",
]
