"""What a stage hands the training engine (`TrainingTask`, with its `LoopSettings`) and what it gets back
(`EngineRun`), plus how a model output becomes the loss and its logged components."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import TrainingLoopConfig


@dataclass
class LoopSettings:
    """How the engine trains one task (a `fit` run reads them from `training:`; a stage sets its own)."""

    epochs: int
    seed: int = 0
    gradient_accumulation_steps: int = 1
    clip_grad_value: float | None = None
    max_grad_norm: float | None = None
    log_every: int = 1
    keep_checkpoints: int = 1
    checkpoint_every_steps: int | None = None
    patience: int | None = None
    eval_every: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "gradient_accumulation_steps", "log_every", "keep_checkpoints", "eval_every"):
            if getattr(self, name) < (0 if name == "epochs" else 1):
                raise ValueError(f"training.{name} must be >= 1, got {getattr(self, name)}")
        if self.checkpoint_every_steps is not None and self.checkpoint_every_steps < 1:
            raise ValueError(
                f"training.checkpoint_every_steps must be >= 1 or null, got {self.checkpoint_every_steps}"
            )

    @classmethod
    def from_training(cls, loop: TrainingLoopConfig, **changes: Any) -> LoopSettings:
        """The `training:` section's settings, with `changes` (a stage's own epochs, no clipping, ...)."""
        values = {name: getattr(loop, name) for name in cls.__dataclass_fields__ if hasattr(loop, name)}
        return cls(**{**values, **changes})

    @classmethod
    def for_stage(cls, loop: TrainingLoopConfig, epochs: int, progress: bool = True, **changes: Any) -> LoopSettings:
        """A recipe stage's settings: its own epochs, no clipping and no early stopping (the papers' pre-training
        steps have neither); seed, accumulation, logging and checkpoint cadence from `training:`."""
        return cls.from_training(loop, epochs=epochs, clip_grad_value=None, max_grad_norm=None, patience=None,
                                 progress=progress, **changes)  # fmt: skip


@dataclass
class TrainingTask:
    """What a stage gives the engine.

    Attributes:
        name: the task's name in logs, checkpoints and messages (`train`, `visual`, `step1`, ...).
        model: the module trained; checkpoints hold its `state_dict`.
        train_loader: the training `DataLoader`; its sampler's order must depend only on the epoch (`set_epoch`).
        optimizer: builds the optimizer from the (unprepared) module.
        settings: epochs, clipping, logging, checkpoint cadence, patience.
        scheduler: builds the learning-rate schedule (stepped once per epoch) from the optimizer; None: constant.
        forward: `(prepared model, batch) -> loss | ModelOutput`; default `model(**batch)` without `index`.
        on_epoch_start: `(unwrapped model, epoch)` before each epoch's batches (also after a resume).
        evaluate: `(prepared model, epoch) -> scores`, called every `eval_every` epochs and after the last.
        selection: the score of `evaluate` that selects the best epoch (higher is better); None: no selection.
        on_best: `(unwrapped model)` on the main process when the selection score improves.
        find_unused_parameters: some trainable parameters may get no gradient in a step (DDP must know).
    """

    name: str
    model: nn.Module
    train_loader: Any
    optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    settings: LoopSettings
    scheduler: Callable[[torch.optim.Optimizer], Any] | None = None
    forward: Callable[[nn.Module, Any], Any] | None = None
    on_epoch_start: Callable[[nn.Module, int], None] | None = None
    evaluate: Callable[[nn.Module, int], dict[str, float]] | None = None
    selection: str | None = None
    on_best: Callable[[nn.Module], None] | None = None
    find_unused_parameters: bool = False


@dataclass
class EngineRun:
    """A finished `Engine.run`: the prepared and unwrapped model, the trainer state and its history."""

    model: Any
    unwrapped: nn.Module
    optimizer: Any
    state: dict[str, Any]
    resumed_from: Path | None = None
    epochs_trained_now: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    num_processes: int = 1
    replicas_in_sync: bool = True
    mixed_precision: str = "no"


def default_forward(model: nn.Module, batch: Any) -> Any:
    """`model(**batch)` without the example index (a collator's bookkeeping, not a model input)."""
    return model(**{key: value for key, value in batch.items() if key != "index"})


def loss_components(output: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss, {"loss": loss, every scalar `*_loss` field}) of a model output or a bare loss tensor."""
    if torch.is_tensor(output):
        return output, {"loss": output.detach()}
    loss = output["loss"] if isinstance(output, dict) or hasattr(output, "keys") else output.loss
    components = {"loss": loss.detach()}
    for key, value in output.items():
        if key.endswith("_loss") and torch.is_tensor(value) and value.numel() == 1:
            components[key] = value.detach()
    return loss, components


def fresh_state(task: str) -> dict[str, Any]:
    return {
        "task": task, "epoch": -1, "global_step": 0, "micro_step": 0, "partial": {"sums": {}, "batches": 0},
        "best_metric": None, "best_epoch": None, "epochs_without_improvement": 0, "stopped_early": False,
        "history": [],
    }  # fmt: skip


__all__ = ["EngineRun", "LoopSettings", "TrainingTask", "default_forward", "fresh_state", "loss_components"]
