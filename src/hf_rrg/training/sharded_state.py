"""Optimizer state for checkpoints whether or not the model is sharded (FSDP).

Unsharded (one process, DDP): the optimizer's own `state_dict()` (moments keyed by parameter index) and
`load_state_dict`. Sharded (FSDP2 `fully_shard`, what Accelerate's FSDP plugin applies): the full, unsharded state
keyed by parameter name through `torch.distributed.checkpoint.state_dict`, gathered on the main process for
saving (all processes must call) and broadcast from it when loading. Both are plain tensors + JSON-able values,
so either is written as safetensors + JSON.
"""

from __future__ import annotations

from typing import Any

import torch


def is_sharded(accelerator: Any) -> bool:
    """Whether the accelerator shards the model (Accelerate's FSDP)."""
    return str(getattr(accelerator, "distributed_type", "")).endswith("FSDP")


def _options(**kwargs: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def _raw(optimizer: Any) -> torch.optim.Optimizer:
    return getattr(optimizer, "optimizer", optimizer)  # Accelerate's AcceleratedOptimizer wraps the real one


def full_optimizer_state(model: torch.nn.Module, optimizer: Any, sharded: bool) -> dict[str, Any]:
    """The optimizer state to checkpoint (complete on the main process). Call on every process."""
    if not sharded:
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, _raw(optimizer), options=_options(cpu_offload=True))


def load_full_optimizer_state(model: torch.nn.Module, optimizer: Any, state: dict[str, Any], sharded: bool) -> None:
    """Load what `full_optimizer_state` returned (read on the main process at least). Call on every process."""
    if not sharded:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, _raw(optimizer), optim_state_dict=state, options=_options(broadcast_from_rank0=True))


__all__ = ["full_optimizer_state", "is_sharded", "load_full_optimizer_state"]
