"""Opt-in pytest plugin: every Adam / AdamW first moves its parameters by a little noise, as another CPU's
arithmetic would move a training run, so that a test that trains can be checked for robustness before CI finds
it fragile:

    HF_RRG_PERTURB_SEED=3 PYTHONPATH=tests python -m pytest -p perturbed_weights tests/test_coatt.py

Seed 0 (or no variable) leaves the weights alone. The noise is N(0, 1) times `HF_RRG_PERTURB_SCALE` (default 1e-4)
times each tensor's mean absolute value. See docs/reliability.md ("Tests that train")."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch

DEFAULT_SCALE = 1e-4


def perturb_(tensors: Iterable[torch.Tensor], seed: int, scale: float = DEFAULT_SCALE) -> None:
    """Add `scale * mean|t| * N(0, 1)` to each tensor in place (noise drawn with `seed`); seed 0 changes nothing."""
    if not seed:
        return
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in tensors:
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32).to(tensor)
            tensor.add_(noise * scale * tensor.abs().mean())


def _parameter_tensors(params: list[Any]) -> list[torch.Tensor]:
    return [t for group in params for t in (group["params"] if isinstance(group, dict) else [group])]


def perturbing(optimizer_class: type, seed: int, scale: float) -> type:
    """A subclass of `optimizer_class` that perturbs its parameters (`perturb_`) before taking them."""

    class Perturbing(optimizer_class):
        def __init__(self, params: Iterable[Any], *args: Any, **kwargs: Any) -> None:
            params = list(params)
            perturb_(_parameter_tensors(params), seed, scale)
            super().__init__(params, *args, **kwargs)

    Perturbing.__name__ = Perturbing.__qualname__ = optimizer_class.__name__
    return Perturbing


def pytest_configure(config: Any) -> None:
    seed = int(os.environ.get("HF_RRG_PERTURB_SEED", "0"))
    scale = float(os.environ.get("HF_RRG_PERTURB_SCALE", str(DEFAULT_SCALE)))
    torch.optim.Adam = perturbing(torch.optim.Adam, seed, scale)
    torch.optim.AdamW = perturbing(torch.optim.AdamW, seed, scale)
