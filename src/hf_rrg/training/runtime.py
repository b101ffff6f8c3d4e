"""Where training runs: the `Accelerator` every stage trains with, the process group for work before training,
and seeding.

Accelerate starts a CPU process group (gloo) only when told it runs on CPU. `accelerate launch --multi_gpu` and
`torchrun` start several processes on a machine without a GPU too; each would then believe it trains alone and
they would all write the same run folder. So when `WORLD_SIZE > 1` and no GPU is visible, the processes train on
CPU together (and the main process says so); `training.cpu: true` asks for that explicitly.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from .config import TrainingConfig

logger = logging.getLogger(__name__)

LOGS_DIR = "logs"


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _accelerator_visible() -> bool:
    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def cpu_process_group(config: TrainingConfig) -> bool:
    """Whether the processes train on CPU: `training.cpu`, or several processes and no GPU to give them."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return config.training.cpu or (distributed and not _accelerator_visible())


def resolve_precision(requested: str) -> str:
    """`auto` -> bf16 on a GPU that has it, else no; fp16 needs a GPU (full precision on CPU, with a warning)."""
    if requested == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if requested == "fp16" and not torch.cuda.is_available():
        logger.warning("fp16 needs a GPU; training in full precision on CPU")
        return "no"
    return requested


def make_accelerator(config: TrainingConfig, run_dir: Path, find_unused_parameters: bool = False) -> Any:
    """An `Accelerator` for the config: gradient accumulation, mixed precision, TensorBoard when installed, and
    DDP told whether some parameters may get no gradient in a step (`find_unused_parameters`)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

    cpu = cpu_process_group(config)
    accelerator = Accelerator(
        gradient_accumulation_steps=config.training.gradient_accumulation_steps,
        mixed_precision=resolve_precision(config.training.mixed_precision),
        cpu=cpu,
        log_with="tensorboard" if tensorboard_available() else None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(Path(run_dir) / LOGS_DIR)),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)],
    )
    if cpu and not config.training.cpu and accelerator.is_main_process and accelerator.num_processes > 1:
        print(f"{accelerator.num_processes} processes and no GPU: training on CPU together (gloo); set "
              "training.cpu: true to ask for this explicitly")  # fmt: skip
    return accelerator


def plain_accelerator() -> Any:
    """An `Accelerator` with default settings for short jobs outside a training config (e.g. `hf-rrg asgk glove`);
    several processes without a GPU train on CPU together, as with a config."""
    from accelerate import Accelerator

    return Accelerator(cpu=int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _accelerator_visible())


def distributed_state(config: TrainingConfig) -> Any:
    """Accelerate's `PartialState` for work before training (a recipe's stages): the same process group the
    engine's `Accelerator` uses, with `is_main_process`, `wait_for_everyone` and `device`."""
    from accelerate import PartialState

    return PartialState(cpu=cpu_process_group(config))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) in this process."""
    from accelerate.utils import set_seed

    set_seed(seed)


__all__ = [
    "LOGS_DIR",
    "cpu_process_group",
    "distributed_state",
    "make_accelerator",
    "plain_accelerator",
    "resolve_precision",
    "seed_everything",
    "tensorboard_available",
]
