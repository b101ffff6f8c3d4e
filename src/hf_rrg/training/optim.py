"""Optimizer with two parameter groups (visual extractor vs the rest) and per-epoch learning-rate schedules."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import OptimizerConfig, SchedulerConfig

VISUAL_MODULE_NAME = "visual_extractor"


def split_parameters(model: nn.Module, visual_module_name: str = VISUAL_MODULE_NAME) -> tuple[list, list]:
    """(visual extractor parameters, all other trainable parameters); a parameter is visual when a module
    called `visual_module_name` is on its path (e.g. `encoder.visual_extractor.backbone.conv1.weight`)."""
    visual, rest = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (visual if visual_module_name in name.split(".") else rest).append(parameter)
    if not visual:
        raise ValueError(
            f"{type(model).__name__} has no trainable parameters under a module named {visual_module_name!r}; "
            "the two-group optimizer needs the visual extractor there."
        )
    return visual, rest


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    """Adam / AdamW (betas, eps, amsgrad) / SGD over the groups `visual` (lr_visual) and `rest` (lr_rest), same
    weight decay."""
    visual, rest = split_parameters(model)
    groups = [
        {"params": visual, "lr": config.lr_visual, "name": "visual"},
        {"params": rest, "lr": config.lr_rest, "name": "rest"},
    ]
    if config.name in ("adam", "adamw"):
        optimizer = torch.optim.Adam if config.name == "adam" else torch.optim.AdamW
        return optimizer(
            groups, weight_decay=config.weight_decay, amsgrad=config.amsgrad, betas=tuple(config.betas), eps=config.eps
        )
    if config.name == "sgd":
        return torch.optim.SGD(groups, momentum=config.momentum, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.name!r}; choose adam, adamw or sgd")


def epoch_lr_factor(config: SchedulerConfig, epoch: int, epochs: int) -> float:
    """Learning-rate multiplier for (0-based) `epoch` of `epochs` (warm-up first, then the schedule)."""
    if config.warmup_epochs > 0 and epoch < config.warmup_epochs:
        return (epoch + 1) / config.warmup_epochs
    epoch = epoch - config.warmup_epochs
    if config.name == "step":
        return config.gamma ** (epoch // config.step_size)
    if config.name == "exponential":
        return config.gamma**epoch
    if config.name == "cosine":
        span = max(1, epochs - config.warmup_epochs)
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch, span) / span))
    if config.name == "constant":
        return 1.0
    raise ValueError(f"unknown scheduler {config.name!r}; choose step, exponential, cosine or constant")


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: SchedulerConfig, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` stepped once per epoch: `step` equals `StepLR(step_size, gamma)`, and so on."""
    if config.name == "step" and config.step_size < 1:
        raise ValueError(f"scheduler.step_size must be >= 1, got {config.step_size}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: epoch_lr_factor(config, epoch, epochs))


__all__ = ["build_optimizer", "build_scheduler", "epoch_lr_factor", "split_parameters"]
