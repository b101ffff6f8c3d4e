"""The opt-in plugin that checks training tests against another CPU's arithmetic moves weights by the documented
amount, only when asked, and leaves the optimizer working."""

from __future__ import annotations

import torch
from perturbed_weights import perturb_, perturbing


def test_noise_is_scale_times_mean_size_and_seed_zero_changes_nothing() -> None:
    weights = torch.full((400, 500), 2.0)
    untouched = weights.clone()
    perturb_([weights], seed=0)
    assert torch.equal(weights, untouched)
    perturb_([weights], seed=3, scale=1e-3)
    moved = weights - untouched
    # N(0, 1) * 1e-3 * mean|w| (= 2): standard deviation 2e-3, mean 0, over 200,000 draws
    assert abs(moved.std().item() - 2e-3) < 2e-3 * 0.02 and abs(moved.mean().item()) < 2e-3 * 0.02
    again = untouched.clone()
    perturb_([again], seed=3, scale=1e-3)
    assert torch.equal(again, weights)  # the seed decides the noise


def test_perturbing_optimizer_moves_the_parameters_of_every_group_then_steps() -> None:
    a, b = torch.nn.Parameter(torch.ones(50, 50)), torch.nn.Parameter(torch.ones(50))
    before = a.detach().clone(), b.detach().clone()
    optimizer = perturbing(torch.optim.SGD, seed=1, scale=1e-2)([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    assert type(optimizer).__name__ == "SGD"
    assert not torch.equal(a.detach(), before[0]) and not torch.equal(b.detach(), before[1])
    assert (a.detach() - before[0]).abs().max() < 0.1  # a small move, not a new initialisation
    start = b.detach().clone()
    b.sum().backward()
    optimizer.step()
    torch.testing.assert_close(b.detach(), start - 0.5)  # the group's own learning rate, gradient 1
