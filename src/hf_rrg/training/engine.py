"""The one training engine every stage of every recipe trains through (`Engine.run(TrainingTask)`).

A stage supplies a `TrainingTask`: the module to train (its forward returns the loss, or a `ModelOutput` whose
`loss` is the objective and whose scalar `*_loss` fields are its named components), the training `DataLoader`, how
to build the optimizer and the per-epoch schedule, and, where it has them, an evaluation and the score that
selects the best epoch. The engine supplies the rest: device placement and DDP / multi-node through
`accelerate.Accelerator`, mixed precision, gradient accumulation and clipping, the schedule, progress bars,
JSON-lines and TensorBoard logs, atomic safetensors + JSON checkpoints (`checkpointing`), exact resume (model,
optimizer moments, schedule, position in the epoch, every process's random states), early stopping, a guard
that stops on a non-finite loss, and a line saying where the outputs went.

Exact resume holds because the data order of epoch e depends only on (seed, e) (`EpochPermutationSampler`), a
mid-epoch resume skips the batches already seen without loading them, and the random states are restored at the
point where they were saved: before the epoch's data iterator is made for an end-of-epoch checkpoint, after it
for a mid-epoch one (making an iterator draws from torch's generator).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .checkpointing import (
    CheckpointParts,
    checkpoint_name,
    latest_checkpoint,
    load_checkpoint_parts,
    remove_stale_temporaries,
    rng_state_file,
    save_checkpoint,
    unknown_files,
    verify_checkpoint,
)
from .logs import JsonlLog, epoch_log_path, epoch_summary, step_log_path, tracker_name
from .resume import ResumeError, ResumePolicy
from .runtime import LOGS_DIR, tensorboard_available
from .sharded_state import full_optimizer_state, is_sharded, load_full_optimizer_state
from .state_io import StateFileError, load_rng_state
from .task import EngineRun, LoopSettings, TrainingTask, default_forward, fresh_state, loss_components


class NonFiniteLossError(ValueError):
    """The loss became NaN or infinite; the message names the stage, epoch, step and every loss component."""


class Engine:
    """Runs `TrainingTask`s on one `Accelerator`, checkpointing into `checkpoint_dir` and logging into
    `run_dir/logs`. Without `policy.resume`, checkpoints already in `checkpoint_dir` are an error, or are deleted
    first with `replace_previous` (a recipe stage run again from its start). `run_dir=None`: no logs;
    `checkpoint_dir=None`: no checkpoints (a short job outside a run folder, e.g. `hf-rrg asgk glove`)."""

    def __init__(self, accelerator: Any, run_dir: Path | None, checkpoint_dir: Path | None,
                 policy: ResumePolicy | None = None, replace_previous: bool = False) -> None:  # fmt: skip
        self.accelerator = accelerator
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.policy = policy or ResumePolicy()
        self.replace_previous = replace_previous
        self.main = accelerator.is_main_process

    # ------------------------------------------------------------------------------------------ the run

    def run(self, task: TrainingTask) -> EngineRun:
        """Train `task` (resuming from the newest checkpoint when the policy says so) and return the result."""
        acc, settings = self.accelerator, task.settings
        acc.gradient_accumulation_steps = settings.gradient_accumulation_steps
        checkpoint = self.resume_point()
        optimizer = task.optimizer(task.model)
        scheduler = task.scheduler(optimizer) if task.scheduler is not None else None
        state, pending_rng = fresh_state(task.name), None
        if checkpoint is not None:
            state, parts = self._read_checkpoint(checkpoint, task.name)
            task.model.load_state_dict(parts.model_state)
        model, optimizer, loader = acc.prepare(task.model, optimizer, task.train_loader)
        if checkpoint is not None:
            self._restore_optimization(parts, model, optimizer, scheduler)
            pending_rng = checkpoint
        logs = (self.run_dir or Path(".")) / LOGS_DIR
        step_log = JsonlLog(step_log_path(logs, task.name), self.main and self.run_dir is not None)
        epoch_log = JsonlLog(epoch_log_path(logs, task.name), self.main and self.run_dir is not None)
        self._start_logs(task, state, step_log, epoch_log, checkpoint)
        start, trained = state["epoch"] + 1, 0
        self._say_when_nothing_left(task, state, start)
        for epoch in range(start, settings.epochs):
            if state["stopped_early"]:
                break
            began = time.time()
            means = self._train_epoch(task, model, optimizer, loader, epoch, state, pending_rng, step_log, scheduler)
            pending_rng = None
            if scheduler is not None:
                scheduler.step()
            record = {"epoch": epoch, "step": state["global_step"], "seconds": None}
            record.update({f"train/{key}": value for key, value in means.items()})
            record.update(self._learning_rates(optimizer))
            record.update(self._evaluate_and_select(task, model, epoch, state))
            record["seconds"] = round(time.time() - began, 3)
            state["history"].append(record)
            state.update(epoch=epoch, micro_step=0, partial={"sums": {}, "batches": 0})
            epoch_log.write(record)
            if self.main and settings.progress:
                tqdm.write(epoch_summary(task.name, epoch, settings.epochs, record))
            self._checkpoint(task, model, optimizer, scheduler, state, end_of_epoch=True)
            trained += 1
            if state["stopped_early"] and self.main:
                print(f"Early stopping {task.name}: no {task.selection} improvement for {settings.patience} epochs")
        finish_trackers(acc)
        if self.main and trained and self.run_dir is not None:
            print(f"{task.name}: trained epochs {start + 1}-{start + trained} of {settings.epochs}; logs: "
                  f"{step_log.path.parent}; checkpoints: {self.checkpoint_dir}")  # fmt: skip
        return EngineRun(model=model, unwrapped=acc.unwrap_model(model), optimizer=optimizer, state=state,
                         resumed_from=checkpoint, epochs_trained_now=trained, history=state["history"],
                         num_processes=acc.num_processes, replicas_in_sync=replicas_in_sync(acc, model),
                         mixed_precision=str(acc.mixed_precision))  # fmt: skip

    def resume_point(self) -> Path | None:
        """The checkpoint this engine's run continues from (None: a fresh start)."""
        if self.checkpoint_dir is None:
            return None
        previous = latest_checkpoint(self.checkpoint_dir)
        if previous is not None and not self.policy.resume and not self.replace_previous:
            raise FileExistsError(
                f"{self.checkpoint_dir} already holds checkpoints; pass --resume to continue or choose a new run folder"
            )
        self.accelerator.wait_for_everyone()
        if self.main:
            remove_stale_temporaries(self.checkpoint_dir)
            if previous is not None and not self.policy.resume:
                shutil.rmtree(self.checkpoint_dir)
        self.accelerator.wait_for_everyone()
        return previous if self.policy.resume else None

    # ------------------------------------------------------------------------------------------ one epoch

    def _train_epoch(self, task, model, optimizer, loader, epoch, state, pending_rng, step_log, scheduler):
        acc, settings = self.accelerator, task.settings
        forward = task.forward or default_forward
        skip = state["micro_step"] if pending_rng is not None else 0
        if pending_rng is not None and skip == 0:
            self._restore_rng(pending_rng)  # an end-of-epoch state: restored before the epoch's iterator
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        if task.on_epoch_start is not None:
            task.on_epoch_start(acc.unwrap_model(model), epoch)
        batches = acc.skip_first_batches(loader, skip) if skip else loader
        sums = dict(state["partial"]["sums"]) if skip else {}
        count = state["partial"]["batches"] if skip else 0
        model.train()
        iterator = self._iterate(batches, pending_rng if skip else None)
        progress = tqdm(iterator, total=len(loader), initial=skip, leave=False,
                        desc=f"{task.name} {epoch + 1}/{settings.epochs}",
                        disable=not (acc.is_local_main_process and settings.progress))  # fmt: skip
        for micro_step, batch in enumerate(progress, start=skip):
            with acc.accumulate(model):
                loss, components = loss_components(forward(model, batch))
                means = self._gathered_means(components)
                if not all(math.isfinite(value) for value in means.values()):
                    raise NonFiniteLossError(self._non_finite_message(task, epoch, state, means))
                acc.backward(loss)
                if acc.sync_gradients:
                    self._clip(model, settings)
                optimizer.step()
                optimizer.zero_grad()
            for key, value in means.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            progress.set_postfix(loss=f"{means['loss']:.4f}")
            if not acc.sync_gradients:
                continue
            state["global_step"] += 1
            if state["global_step"] % settings.log_every == 0:
                record = {"epoch": epoch, "step": state["global_step"], "micro_step": micro_step, **means,
                          **self._learning_rates(optimizer)}  # fmt: skip
                step_log.write(record)
                acc.log({f"{task.name}/{k}": v for k, v in record.items() if k not in ("epoch", "step")},
                        step=state["global_step"])  # fmt: skip
            every = settings.checkpoint_every_steps
            if every and state["global_step"] % every == 0 and not acc.gradient_state.end_of_dataloader:
                state.update(micro_step=micro_step + 1, partial={"sums": sums, "batches": count})
                self._checkpoint(task, model, optimizer, scheduler, state, end_of_epoch=False)
        return {key: value / max(count, 1) for key, value in sums.items()}

    def _iterate(self, batches: Any, pending_rng: Path | None) -> Iterator[Any]:
        """The epoch's batches; for a mid-epoch resume the random states are restored once the iterator exists."""
        iterator = iter(batches)
        if pending_rng is None:
            yield from iterator
            return
        try:
            first = next(iterator)
        except StopIteration:
            return
        self._restore_rng(pending_rng)
        yield first
        yield from iterator

    def _gathered_means(self, components: dict[str, torch.Tensor]) -> dict[str, float]:
        names = sorted(components)
        stacked = torch.stack([components[name].float().reshape(()) for name in names])[None]
        return dict(zip(names, self.accelerator.gather(stacked).mean(0).tolist()))

    def _non_finite_message(self, task: TrainingTask, epoch: int, state: dict[str, Any], means: dict) -> str:
        shown = ", ".join(f"{key}={value:.6g}" for key, value in means.items())
        return (
            f"{task.name}: the loss is not finite at epoch {epoch + 1}, optimizer step {state['global_step'] + 1} "
            f"({shown}); the run stopped before this step changed the weights and nothing was exported. Lower the "
            f"learning rate or check the data, then resume from the last checkpoint in {self.checkpoint_dir}"
        )

    def _clip(self, model: Any, settings: LoopSettings) -> None:
        if settings.clip_grad_value is not None:
            self.accelerator.clip_grad_value_(model.parameters(), settings.clip_grad_value)
        if settings.max_grad_norm is not None:
            self.accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)

    @staticmethod
    def _learning_rates(optimizer: Any) -> dict[str, float]:
        return {f"lr/{group.get('name', i)}": group["lr"] for i, group in enumerate(optimizer.param_groups)}

    # ------------------------------------------------------------------------------------------ evaluation

    def _evaluate_and_select(self, task: TrainingTask, model: Any, epoch: int, state: dict[str, Any]) -> dict:
        settings = task.settings
        due = (epoch + 1) % settings.eval_every == 0 or epoch + 1 == settings.epochs
        if task.evaluate is None or not due:
            return {}
        scores = task.evaluate(model, epoch)
        self.accelerator.log({f"val/{k}": v for k, v in scores.items()}, step=state["global_step"])
        if task.selection is not None:
            value = scores[task.selection]
            if state["best_metric"] is None or value > state["best_metric"]:
                state.update(best_metric=value, best_epoch=epoch, epochs_without_improvement=0)
                if self.main and task.on_best is not None:
                    task.on_best(self.accelerator.unwrap_model(model))
            else:
                state["epochs_without_improvement"] += 1
            if settings.patience is not None and state["epochs_without_improvement"] >= settings.patience:
                state["stopped_early"] = True
        return {f"val/{key}": value for key, value in scores.items()}

    # ------------------------------------------------------------------------------------------ checkpoints

    def _checkpoint(self, task, model, optimizer, scheduler, state, end_of_epoch: bool) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        acc = self.accelerator
        acc.wait_for_everyone()
        model_state = acc.get_state_dict(model)
        scaler = getattr(acc, "scaler", None)
        parts = CheckpointParts(
            trainer_state={**state, "mixed_precision": str(acc.mixed_precision)},
            model_state=model_state,
            optimizer_state=full_optimizer_state(model, optimizer, is_sharded(acc)),
            scheduler_state=None if scheduler is None else _json_safe(scheduler.state_dict()),
            scaler_state=None if scaler is None else scaler.state_dict(),
        )
        name = checkpoint_name(state["epoch"], state["global_step"], end_of_epoch)
        return save_checkpoint(acc, self.checkpoint_dir, name, parts, keep=task.settings.keep_checkpoints)

    def _read_checkpoint(self, checkpoint: Path, task: str) -> tuple[dict[str, Any], CheckpointParts]:
        state = verify_checkpoint(checkpoint)
        if state.get("task") != task:
            raise ResumeError(f"checkpoint {checkpoint} belongs to {state.get('task')!r}, not to {task!r}")
        saved, now = state.get("num_processes"), self.accelerator.num_processes
        if saved != now and not self.policy.with_changes:
            raise ResumeError(
                f"checkpoint {checkpoint} was written by {saved} processes and this run has {now}: the data "
                "would be split differently. Launch as many processes, or pass --resume-with-changes"
            )
        ignored = unknown_files(checkpoint, state)
        if ignored and self.main:
            print(f"Ignoring files in {checkpoint} that hf-rrg does not write (never loaded): {ignored}")
        parts = load_checkpoint_parts(checkpoint, state)
        if self.main:
            print(f"Resuming {task} from {checkpoint} (epoch {state['epoch'] + 1}, step {state['global_step']})")
        return state, parts

    def _restore_optimization(self, parts: CheckpointParts, model: Any, optimizer: Any, scheduler: Any) -> None:
        if parts.optimizer_state is not None:
            load_full_optimizer_state(model, optimizer, parts.optimizer_state, is_sharded(self.accelerator))
        if scheduler is not None and parts.scheduler_state is not None:
            scheduler.load_state_dict(parts.scheduler_state)
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None and parts.scaler_state is not None:
            scaler.load_state_dict(parts.scaler_state)

    def _restore_rng(self, checkpoint: Path) -> None:
        path = rng_state_file(checkpoint, self.accelerator.process_index)
        try:
            load_rng_state(path)
        except StateFileError as error:
            if not self.policy.inexact:
                raise ResumeError(
                    f"cannot restore the random states of process {self.accelerator.process_index}: {error}. The "
                    "resumed run would not repeat the interrupted one; pass --resume-inexact to continue anyway"
                ) from None
            print(f"Warning: {error}; continuing with fresh random states (--resume-inexact): not an exact resume")

    # ------------------------------------------------------------------------------------------ logs

    def _start_logs(self, task, state, step_log, epoch_log, checkpoint) -> None:
        if checkpoint is not None:
            step_log.truncate_after("step", state["global_step"])
            epoch_log.truncate_after("epoch", state["epoch"])
        else:
            step_log.clear()
            epoch_log.clear()
        if tensorboard_available() and self.run_dir is not None:
            self.accelerator.init_trackers(tracker_name(task.name))

    def _say_when_nothing_left(self, task: TrainingTask, state: dict[str, Any], start: int) -> None:
        if not self.main:
            return
        if state["stopped_early"] and start < task.settings.epochs:
            print(f"{task.name} stopped early after epoch {start} (no {task.selection} improvement for "
                  f"{task.settings.patience} epochs): nothing more to train. Raise training.patience (or set it to "
                  "null) together with --resume to train on")  # fmt: skip
        elif start >= task.settings.epochs:
            print(f"{task.name}: all {task.settings.epochs} epochs are already trained; nothing more to train (raise "
                  "the epochs with --set and --resume to train longer)")  # fmt: skip


def replicas_in_sync(accelerator: Any, model: Any) -> bool:
    """True when every process holds the same parameters (checked by gathering a checksum from each)."""
    total = torch.zeros(1, dtype=torch.float64, device=accelerator.device)
    for parameter in accelerator.unwrap_model(model).parameters():
        total += parameter.detach().double().sum() + (parameter.detach().double() ** 2).sum()
    sums = accelerator.gather(total)
    return bool(torch.allclose(sums, sums[0].expand_as(sums), rtol=0, atol=0))


def run_stage_task(context: Any, task: TrainingTask, folder: str) -> EngineRun:
    """Train a recipe stage's `task` on an `Accelerator` made from the stage context's config, checkpointing in
    `RUN_DIR/<folder>/checkpoints` and resuming as the context says (a stage run again starts afresh)."""
    from .runtime import make_accelerator

    accelerator = make_accelerator(context.config, context.run_dir, task.find_unused_parameters)
    engine = Engine(accelerator, context.run_dir, context.run_dir / folder / "checkpoints", context.policy,
                    replace_previous=True)  # fmt: skip
    return engine.run(task)


def finish_trackers(accelerator: Any) -> None:
    """Close the TensorBoard writers (not `end_training`, which also ends the process group later stages use)."""
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers = []


def _json_safe(state: dict[str, Any]) -> dict[str, Any]:
    """A scheduler's `state_dict` without what JSON cannot hold (LambdaLR's function slots are None already)."""
    return {key: value for key, value in state.items() if not callable(value)}


__all__ = [
    "Engine",
    "EngineRun",
    "LoopSettings",
    "NonFiniteLossError",
    "TrainingTask",
    "default_forward",
    "finish_trackers",
    "fresh_state",
    "loss_components",
    "replicas_in_sync",
    "run_stage_task",
]
