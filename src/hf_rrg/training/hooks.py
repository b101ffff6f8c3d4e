"""`FitHooks`: what a recipe may add to the shared training loop without the loop knowing the method.

A method whose model reads more than images and reports (XProNet's pseudo labels, ...) gives `fit` a `FitHooks`:
the dataset columns each example must carry, a batch hook for training batches and one for evaluation batches
(their tensors are passed to `model(...)` / `model.generate(...)` under their own names), a function that prepares
the freshly built model before training (e.g. loads an initial prototype matrix), and metadata recorded in
`metrics.json` under `"recipe"`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

BatchHook = Callable[[Sequence[dict]], Mapping[str, torch.Tensor]]


@dataclass
class FitHooks:
    """Method-specific additions to `fit` (all optional; the default adds nothing).

    Attributes:
        columns: dataset columns every example carries into the hooks (e.g. `("id",)`); a split without one of
            them is an error naming it.
        train_fields: `(examples) -> {name: tensor}` added to every training batch and passed to the model's
            forward as keyword arguments.
        eval_fields: the same for validation/test batches, passed to `generate` (None: generation sees only the
            images, which is what inference has).
        prepare_model: called with the freshly built (unwrapped) model before training starts; not called when a
            run resumes from a checkpoint (the checkpoint holds the weights).
        metadata: JSON-serialisable facts about the run written to `metrics.json["recipe"]` (e.g. which labels
            evaluation used).
        on_epoch_start: called as `(unwrapped_model, epoch)` (epoch counted from 0) before each training epoch's
            batches are drawn, also after a resume (e.g. ITHN's hardness schedule reads the epoch).
        find_unused_parameters: some trainable parameters get no gradient when training reports (e.g. ASGK's
            textbook GRU); DDP must then look for them each step.
    """

    columns: tuple[str, ...] = ()
    train_fields: BatchHook | None = None
    eval_fields: BatchHook | None = None
    prepare_model: Callable[[Any], None] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    on_epoch_start: Callable[[Any, int], None] | None = None
    find_unused_parameters: bool = False


__all__ = ["BatchHook", "FitHooks"]
