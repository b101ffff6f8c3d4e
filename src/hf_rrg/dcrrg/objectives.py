"""DCRRG's four objectives as modules the training engine trains (DDP wraps the module, so every step's loss goes
through its forward), and the per-epoch batches of instances they read.

- `step1_loss`: per-observation CE (§3.1) of image and text instances.
- `step2_loss`: L_CSM (Eq. 3-9) of paired samples, study-level embeddings.
- `step3_loss`: L_RG (Eq. 14) of observation descriptions from the image and the text view (§3.3).
- `step4_loss`: L_RG of full reports (§3.4) through a plain or PEFT-wrapped model.

`step_task` turns one of them into a `TrainingTask`: the batches of epoch e are made by `make_batches(e)` (they
depend only on (seed, e), so a resumed epoch sees the same ones), one batch per DataLoader item, so that with
several processes each trains on its own share of the epoch's batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from ..modeling.dcrrg_losses import calibrated_semantic_matching_loss, observation_cross_entropy
from ..modeling.modeling_dcrrg import DCRRGEncoderOutput, DCRRGForConditionalGeneration
from .data import Instance
from .observations import label_vectors
from .workspace import Workspace

LossFunction = Callable[[Workspace, Any, list], torch.Tensor]


def modality_groups(
    work: Workspace, dcclip: Any, batch: list[Instance], role: str = "train"
) -> Iterator[tuple[str, list[Instance], torch.Tensor, torch.Tensor]]:
    """Per modality present in `batch`: (modality, its instances, each instance's encoded sample (every study or
    report encoded once), each instance's observation prompt (n, 1))."""
    samples = work.samples(role).samples
    for modality in ("image", "text"):
        chosen = [inst for inst in batch if inst.modality == modality]
        if not chosen:
            continue
        rows = sorted({inst.sample for inst in chosen})
        where = {row: i for i, row in enumerate(rows)}
        if modality == "image":
            features = dcclip.encode_image(**work.sample_pixels(role, rows))
        else:
            text = work.text([samples[r].report for r in rows])
            features = dcclip.encode_text(text["text_input_ids"], text["text_attention_mask"])
        index = torch.tensor([where[inst.sample] for inst in chosen], device=work.device)
        prompts = torch.tensor([[inst.observation] for inst in chosen], device=work.device)
        yield modality, chosen, features[index], prompts


def step1_loss(work: Workspace, model: DCRRGForConditionalGeneration, batch: list[Instance]) -> torch.Tensor:
    """Per-observation CE (§3.1) of a batch of image and text instances (each sample encoded once)."""
    dcclip, losses = model.dcclip, []
    for modality, chosen, features, prompts in modality_groups(work, dcclip, batch):
        project, heads = ((dcclip.project_image, dcclip.image_heads) if modality == "image"
                          else (dcclip.project_text, dcclip.text_heads))  # fmt: skip
        logits = heads(project(features, prompts), prompts)[:, 0]
        labels = torch.tensor([inst.target for inst in chosen], device=work.device)
        losses.append(observation_cross_entropy(logits, labels) * len(chosen))
    return sum(losses) / len(batch)


def step2_loss(work: Workspace, model: DCRRGForConditionalGeneration, rows: list[int]) -> torch.Tensor:
    """L_CSM (Eq. 3-9) of paired samples `rows`, study-level (zero-prompt) embeddings."""
    samples, dcclip = work.samples("train").samples, model.dcclip
    v = dcclip.encode_image(**work.sample_pixels("train", rows))
    text = work.text([samples[r].report for r in rows])
    t = dcclip.encode_text(text["text_input_ids"], text["text_attention_mask"])
    zero = torch.full((len(rows), 1), model.config.num_observations, device=work.device)
    labels = label_vectors([samples[r].record for r in rows]).to(work.device)
    return calibrated_semantic_matching_loss(
        dcclip.project_image(v, zero)[:, 0], dcclip.project_text(t, zero)[:, 0], labels, labels, v, t,
        dcclip.temperature,
    )  # fmt: skip


def step3_loss(work: Workspace, model: DCRRGForConditionalGeneration, batch: list[Instance], role: str = "train"):
    """L_RG (Eq. 14) of a batch of (sample, observation, description) instances, image and text views; each
    study / report of the batch is encoded once and projected under every prompt it is asked for."""
    losses, length = [], model.config.description_max_length
    for modality, chosen, features, prompts in modality_groups(work, model.dcclip, batch, role):
        encoded = model.encoder.from_features(features, prompts, modality)
        decoder_ids, labels = work.targets([inst.target for inst in chosen], length)
        out = model(encoder_outputs=encoded, decoder_input_ids=decoder_ids, labels=labels)
        losses.append(out.loss * len(chosen))
    return sum(losses) / len(batch)


def step4_loss(work: Workspace, model: Any, rows: list[int], role: str = "train", frozen_encoder: bool = False):
    """L_RG of full reports (the step-3 objective, §3.4) through `model` (a PEFT model or a plain one). With
    `frozen_encoder` (PT: the image encoder is frozen, §3.4) f_I is computed once per study in eval mode and reused."""
    samples = work.samples(role).samples
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder_ids, labels = work.targets([samples[r].report for r in rows], base.config.max_seq_length)
    if not frozen_encoder:
        return model(**work.sample_pixels(role, rows), input_ids=decoder_ids, labels=labels).loss
    missing = [r for r in rows if (role, r) not in work.memories]
    if missing:
        base.encoder.eval()
        with torch.no_grad():
            memory = base.encoder(**work.sample_pixels(role, missing)).last_hidden_state
        work.memories.update({(role, r): memory[i] for i, r in enumerate(missing)})
    encoder_outputs = DCRRGEncoderOutput(last_hidden_state=torch.stack([work.memories[(role, r)] for r in rows]))
    return model(encoder_outputs=encoder_outputs, input_ids=decoder_ids, labels=labels).loss


class StepObjective(nn.Module):
    """`forward(items)` = `loss_function(workspace, self.model, items)`: one DCRRG step's loss on a batch of
    instances (or sample rows), with the trained model as this module's only child."""

    def __init__(self, model: nn.Module, work: Workspace, loss_function: LossFunction) -> None:
        super().__init__()
        self.model = model
        self.work = work
        self.loss_function = loss_function

    def forward(self, items: list) -> torch.Tensor:
        return self.loss_function(self.work, self.model, items)


class EpochBatches(Dataset):
    """The batches of one epoch as dataset items, made again by `make(epoch)` at `set_epoch`."""

    def __init__(self, make: Callable[[int], list[list]]) -> None:
        self.make = make
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.batches = self.make(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> list:
        return self.batches[index]


def first_item(items: list) -> Any:
    """Collate of a DataLoader whose items are whole batches."""
    return items[0]


def step_task(
    work: Workspace, name: str, model: nn.Module, loss_function: LossFunction,
    make_batches: Callable[[int], list[list]], epochs: int, lr: float, weight_decay: float,
) -> Any:  # fmt: skip
    """The engine task of one DCRRG step: AdamW over `model`'s trainable parameters (Appendix A), no clipping."""
    from ..training.engine import LoopSettings, TrainingTask

    batches = EpochBatches(make_batches)
    loader = DataLoader(batches, batch_size=1, sampler=SequentialSampler(batches), collate_fn=first_item)
    return TrainingTask(
        name=name, model=StepObjective(model, work, loss_function), train_loader=loader,
        optimizer=lambda module: torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr,
                                                   weight_decay=weight_decay),
        settings=LoopSettings.for_stage(work.config.training, epochs, work.options.progress, seed=work.seed),
        forward=lambda module, items: module(items),
        on_epoch_start=lambda module, epoch: batches.set_epoch(epoch),
        find_unused_parameters=True,  # a batch may hold one modality only; step 2 leaves the heads unused
    )  # fmt: skip


__all__ = [
    "EpochBatches",
    "StepObjective",
    "first_item",
    "modality_groups",
    "step1_loss",
    "step2_loss",
    "step3_loss",
    "step4_loss",
    "step_task",
]
