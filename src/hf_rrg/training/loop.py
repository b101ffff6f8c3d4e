"""`fit`: train a report generator through the engine and write the run folder.

`fit` is one client of `hf_rrg.training.engine`, in named parts: `setup_fit` (run folder, data, tokenizer, model,
loaders), `report_task` (what the engine trains: the model's own loss on image + report batches), `validate`
(generate on validation and score; the engine keeps the best epoch by `training.val_metric`, never a test score,
and stops after `patience` epochs without improvement), `save_best`, and `finish_fit` (best weights, one test
generation, `predictions.jsonl`, `metrics.json`, `model/`, `training_curves.png`, a printed summary).

Exact resume: the data order of epoch e is a permutation seeded by (seed, e), each example's augmentation is
seeded by (seed, e, index), and the checkpoint holds the model, optimizer, schedule and every RNG state, so a
resumed run repeats the uninterrupted run's losses.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from hf_rrg.data.collators import IndexedStudies, ReportGenerationCollator

from .checkpointing import checkpoints_dir, latest_checkpoint
from .config import TrainingConfig
from .curves import plot_training_curves
from .engine import Engine, EngineRun, LoopSettings, TrainingTask, replicas_in_sync
from .config_checks import check_evaluation
from .evaluation import generate_reports, score_reports
from .hooks import FitHooks
from .optim import build_optimizer, build_scheduler
from .resume import ResumePolicy, prepare_run_folder
from .run_setup import (
    TOKENIZER_DIR,
    EpochPermutationSampler,
    build_model,
    load_datasets,
    prepare_splits,
    prepare_tokenizer,
    sentence_end_token_id,
)
from .runtime import LOGS_DIR, distributed_state, make_accelerator, seed_everything, tensorboard_available
from .state_io import save_pretrained_atomic, write_json_atomic
from .run_summary import format_run_summary

logger = logging.getLogger(__name__)

BEST_DIR = "best"
MODEL_DIR = "model"


@dataclass
class FitResult:
    """What a finished `fit` produced."""

    run_dir: Path
    best_epoch: int | None
    best_metric: float | None
    val_metric: str
    test_metrics: dict[str, float]
    epochs_trained: int
    history: list[dict[str, Any]] = field(default_factory=list)
    model_dir: Path | None = None


@dataclass
class FitSession:
    """Everything `setup_fit` built for one run."""

    config: TrainingConfig
    run_dir: Path
    policy: ResumePolicy
    accelerator: Any
    hooks: FitHooks
    splits: dict[str, Any]
    tokenizer: Any
    processor: Any
    model: Any
    max_length: int | None
    train_loader: DataLoader
    val_loader: Any
    test_loader: Any
    collator: ReportGenerationCollator

    @property
    def generation_kwargs(self) -> dict[str, Any]:
        return self.config.generation.as_kwargs()


def fit(
    config: TrainingConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    datasets: Mapping[str, Any] | None = None,
    accelerator: Any = None,
    hooks: FitHooks | None = None,
    resume_with_changes: bool = False,
    resume_inexact: bool = False,
    own_run_folder: bool = True,
) -> FitResult:
    """Train `config.method` as configured and write the run under `run_dir`.

    Args:
        config: the validated `TrainingConfig`.
        run_dir: run folder (created); must be new or empty unless `resume`.
        resume: continue from the newest complete checkpoint in `run_dir` (exactly: same order, same losses).
        datasets: {"train", "validation", "test"} datasets to use instead of building `config.data.builder`
            (rows with `images` and `report`; an `id` column is written to predictions when present).
        accelerator: an existing `Accelerator` (default: one made from the config).
        hooks: a recipe's additions (extra batch fields for the model, a model preparation step, metadata for
            `metrics.json`); see `hf_rrg.training.hooks.FitHooks`.
        resume_with_changes / resume_inexact: see `hf_rrg.training.resume.ResumePolicy`.
        own_run_folder: check and write `RUN_DIR/config.yaml` here (False when `run_training` already did).
    """
    policy = ResumePolicy(resume, resume_with_changes, resume_inexact)
    session = setup_fit(config, Path(run_dir), policy, datasets, accelerator, hooks or FitHooks(), own_run_folder)
    engine = Engine(session.accelerator, session.run_dir, checkpoints_dir(session.run_dir), policy)
    return finish_fit(session, engine.run(report_task(session)))


# ---------------------------------------------------------------------------------------------------- setup


def setup_fit(
    config: TrainingConfig, run_dir: Path, policy: ResumePolicy, datasets: Mapping[str, Any] | None,
    accelerator: Any, hooks: FitHooks, own_run_folder: bool = True,
) -> FitSession:  # fmt: skip
    """Run folder, metric names, data, tokenizer, processor, model and loaders of a `fit` run."""
    from hf_rrg.modeling.image_processing_rrg import RRGImageProcessor
    from hf_rrg.modeling.processing_rrg import RRGProcessor

    check_evaluation(config.evaluation, config.training.val_metric)  # typos are found before the first step
    accelerator = accelerator or make_accelerator(config, run_dir, hooks.find_unused_parameters)
    existing = checkpoints_dir(run_dir)
    if own_run_folder:
        prepare_run_folder(run_dir, config, policy, accelerator, existing=existing)
    elif not policy.resume and existing.exists():
        raise FileExistsError(
            f"{run_dir} already holds a training run; pass --resume to continue it or choose a new --output-dir"
        )
    resuming = policy.resume and latest_checkpoint(existing) is not None
    if policy.resume and not resuming and accelerator.is_main_process:
        logger.warning("no complete checkpoint in %s; starting from scratch", run_dir)
    seed_everything(config.training.seed)
    splits = prepare_splits(config, accelerator, datasets)
    tokenizer = prepare_tokenizer(config, run_dir, list(splits["train"]["report"]), accelerator)
    image_processor = RRGImageProcessor(**config.image_processor)
    processor = RRGProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model = build_model(config, tokenizer, image_processor, load_backbone=not resuming)
    if not resuming and hooks.prepare_model is not None:
        hooks.prepare_model(model)
    max_length = getattr(model.config, "max_seq_length", None)  # None: the model bounds its own targets (CoAtt)
    loop = config.training
    train_set = IndexedStudies(splits["train"], extra_columns=hooks.columns)
    collator = ReportGenerationCollator(
        image_processor, tokenizer, max_length=max_length, augment=config.data.augment, seed=loop.seed,
        extra_fields=hooks.train_fields,
    )  # fmt: skip
    train_loader = DataLoader(train_set, batch_size=loop.batch_size, collate_fn=collator, num_workers=loop.num_workers,
                              sampler=EpochPermutationSampler(len(train_set), loop.seed), drop_last=False)  # fmt: skip
    eval_collator = ReportGenerationCollator(image_processor, None, extra_fields=hooks.eval_fields)
    val_loader, test_loader = accelerator.prepare(*(
        DataLoader(IndexedStudies(splits[role], extra_columns=hooks.columns), batch_size=loop.eval_batch_size,
                   shuffle=False, collate_fn=eval_collator, num_workers=loop.num_workers)
        for role in ("validation", "test")
    ))  # fmt: skip
    if not tensorboard_available() and accelerator.is_main_process and not resuming:
        print("tensorboard is not installed: logging to logs/*.jsonl only (pip install tensorboard for TensorBoard)")
    return FitSession(config, run_dir, policy, accelerator, hooks, splits, tokenizer, processor, model, max_length,
                      train_loader, val_loader, test_loader, collator)  # fmt: skip


def report_task(session: FitSession) -> TrainingTask:
    """What the engine trains: the report generator on image + report batches, validated every epoch."""
    config, hooks = session.config, session.hooks

    def on_epoch_start(model: Any, epoch: int) -> None:
        session.collator.epoch = epoch  # the augmentation of (seed, epoch, index)
        if hooks.on_epoch_start is not None:
            hooks.on_epoch_start(model, epoch)

    return TrainingTask(
        name="train",
        model=session.model,
        train_loader=session.train_loader,
        optimizer=lambda model: build_optimizer(model, config.optimizer),
        scheduler=lambda optimizer: build_scheduler(optimizer, config.scheduler, config.training.epochs),
        settings=LoopSettings.from_training(config.training),
        on_epoch_start=on_epoch_start,
        evaluate=lambda model, epoch: validate(session, model),
        selection=config.training.val_metric,
        on_best=lambda model: save_best(model, session.run_dir),
        find_unused_parameters=hooks.find_unused_parameters,
    )


# ---------------------------------------------------------------------------------------------------- evaluation


def _generate_and_score(session: FitSession, model: Any, role: str, metrics: list[str]) -> tuple[list, dict, dict]:
    loader = session.val_loader if role == "validation" else session.test_loader
    predictions = generate_reports(session.accelerator, model, loader, session.tokenizer, session.generation_kwargs,
                                   description=role)  # fmt: skip
    references = list(session.splits[role]["report"])
    ordered = [predictions[i] for i in range(len(references))]
    evaluation = session.config.evaluation
    scores, skipped = score_reports(ordered, references, metrics, evaluation.protocol, session.tokenizer,
                                    session.max_length)  # fmt: skip
    return ordered, scores, skipped


def validate(session: FitSession, model: Any) -> dict[str, float]:
    """Generate on the validation split and score it with `evaluation.val_metrics`."""
    _, scores, _ = _generate_and_score(session, model, "validation", session.config.evaluation.val_metrics)
    val_metric = session.config.training.val_metric
    if val_metric not in scores:
        raise ValueError(
            f"training.val_metric {val_metric!r} is not among the validation scores {sorted(scores)}; "
            "choose one of them or add its family to evaluation.val_metrics"
        )
    return scores


def save_best(model: Any, run_dir: Path) -> None:
    """`RUN_DIR/best`: the weights of the best validation epoch (replaced atomically)."""
    save_pretrained_atomic(run_dir / BEST_DIR, model)


def load_best(model: Any, run_dir: Path) -> None:
    from safetensors.torch import load_file

    path = run_dir / BEST_DIR / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"best weights {path} are missing; the run folder is incomplete")
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    # tied / non-persistent buffers are fine; anything else means a different architecture
    real_missing = [name for name in missing if name in dict(model.named_parameters())]
    if unexpected or real_missing:
        raise ValueError(f"{path} does not match the model: missing {real_missing}, unexpected {unexpected}")


# ---------------------------------------------------------------------------------------------------- finish


def finish_fit(session: FitSession, run: EngineRun) -> FitResult:
    """Best weights, one test generation, the run folder's outputs, a printed summary."""
    accelerator, state, run_dir = session.accelerator, run.state, session.run_dir
    if state["best_epoch"] is not None:
        load_best(run.unwrapped, run_dir)
    in_sync = replicas_in_sync(accelerator, run.model)  # with the best weights loaded on every process
    evaluation = session.config.evaluation
    predictions, test_scores, skipped = _generate_and_score(session, run.model, "test", evaluation.test_metrics)
    if accelerator.is_main_process:
        write_predictions(session, predictions)
        write_json_atomic(run_dir / "metrics.json", run_metrics(session, state, test_scores, skipped, in_sync))
        export_run_model(run.unwrapped, session.processor, run_dir)
        plot_training_curves(state["history"], run_dir / "training_curves.png")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        print(format_run_summary(run_dir))
    return FitResult(
        run_dir=run_dir, best_epoch=state["best_epoch"], best_metric=state["best_metric"],
        val_metric=session.config.training.val_metric, test_metrics=test_scores, epochs_trained=state["epoch"] + 1,
        history=state["history"], model_dir=run_dir / MODEL_DIR,
    )  # fmt: skip


def write_predictions(session: FitSession, predictions: list[str]) -> None:
    test_set = session.splits["test"]
    references = list(test_set["report"])
    ids = list(test_set["id"]) if "id" in getattr(test_set, "column_names", []) else list(range(len(predictions)))
    with open(session.run_dir / "predictions.jsonl", "w", encoding="utf-8") as handle:
        for example_id, prediction, reference in zip(ids, predictions, references):
            handle.write(json.dumps({"id": example_id, "prediction": prediction, "reference": reference}) + "\n")


def run_metrics(session: FitSession, state: dict, test_scores: dict, skipped: dict, in_sync: bool) -> dict[str, Any]:
    """The content of `metrics.json`."""
    config = session.config
    metrics = {
        "method": config.method,
        "val_metric": config.training.val_metric,
        "best_epoch": None if state["best_epoch"] is None else state["best_epoch"] + 1,
        "best_val": state["best_metric"],
        "epochs_trained": state["epoch"] + 1,
        "stopped_early": state["stopped_early"],
        "test": test_scores,
        "skipped_metrics": skipped,
        "val_history": [{k: v for k, v in r.items() if k.startswith("val/") or k == "epoch"} for r in state["history"]],
        "protocol": config.evaluation.protocol,
        "generation": dict(session.generation_kwargs),
        "num_test": len(session.splits["test"]),
        "num_processes": session.accelerator.num_processes,
        "replicas_in_sync": in_sync,
    }
    if session.hooks.metadata:
        metrics["recipe"] = session.hooks.metadata
    return metrics


def export_run_model(model: Any, processor: Any, run_dir: Path) -> Path:
    """`RUN_DIR/model/`: the model and processor `save_pretrained`; then `hf_rrg.hub.export_model` turns it into
    a full Hub repo (code files, card, `auto_map`) when that helper is available."""
    save_pretrained_atomic(run_dir / MODEL_DIR, model, processor)
    return reexport_run_model(run_dir)


def reexport_run_model(run_dir: Path) -> Path:
    """Rebuild `RUN_DIR/model` as a Hub repo from the saved model and the run's current `metrics.json` and
    config (`hf_rrg.hub.export_model`), replacing it atomically."""
    out = run_dir / MODEL_DIR
    try:
        from hf_rrg.hub import export_model
    except ImportError:
        return out
    exported = run_dir / f".tmp_export_{MODEL_DIR}"
    if exported.exists():
        shutil.rmtree(exported)
    export_model(run_dir, exported)
    shutil.rmtree(out)
    os.replace(exported, out)
    return out


__all__ = [
    "BEST_DIR",
    "LOGS_DIR",
    "MODEL_DIR",
    "TOKENIZER_DIR",
    "EpochPermutationSampler",
    "FitResult",
    "FitSession",
    "build_model",
    "distributed_state",
    "export_run_model",
    "finish_fit",
    "fit",
    "load_datasets",
    "make_accelerator",
    "prepare_splits",
    "prepare_tokenizer",
    "reexport_run_model",
    "report_task",
    "sentence_end_token_id",
    "setup_fit",
    "validate",
]
