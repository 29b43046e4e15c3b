"""The round rule of the multistart box maximiser: when another round of restarts runs.

On f(w + Δ) = Σ a_i Δ_i² every box corner is a maximum of the same value Σ a_i r_i², and sign ascent from a corner
stays there, so every restart reaches the best value: the search must end after one round. Raising ``refound``
above the number of random-corner restarts in a round (12 restarts − 1 first-order − 8 spectral = 3) must add a round
only while rounds keep raising the best; counting the fixed starts would end it early.
"""

from __future__ import annotations

import torch

from collect.hessian import sharpness as box


def _quadratic(a: torch.Tensor):
    def values_and_grads(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (a * points**2).sum(1), 2 * a * points

    def value_and_grad(point: torch.Tensor) -> tuple[float, torch.Tensor]:
        v, g = values_and_grads(point.unsqueeze(0))
        return float(v[0]), g[0]

    def hvp_batch(v: torch.Tensor) -> torch.Tensor:
        return 2 * a * v

    return values_and_grads, value_and_grad, hvp_batch


def test_one_round_when_random_restarts_refind_the_best():
    a = torch.linspace(0.5, 2.0, 20, dtype=torch.float64)
    vg, v1, hvp = _quadratic(a)
    w, r = torch.zeros(20, dtype=torch.float64), torch.full((20,), 0.1, dtype=torch.float64)
    res = box.multistart_box_max(vg, v1, w, r, generator=torch.Generator().manual_seed(0), hvp_batch=hvp)
    assert res.n_restarts == box.RESTARTS and res.converged
    assert abs(res.loss_max - float((a * r**2).sum())) < 1e-12


def test_fixed_starts_do_not_count_as_refinding():
    a = torch.linspace(0.5, 2.0, 20, dtype=torch.float64)
    vg, v1, hvp = _quadratic(a)
    w, r = torch.zeros(20, dtype=torch.float64), torch.full((20,), 0.1, dtype=torch.float64)
    random_in_first_round = box.RESTARTS - 1 - 2 * box.SKETCH_RANK
    res = box.multistart_box_max(vg, v1, w, r, generator=torch.Generator().manual_seed(0), hvp_batch=hvp,
                                 refound=random_in_first_round + 1)
    # round 1 raised the best from L(w), so the lack of refinding among its 3 random restarts calls round 2, which
    # refinds the best (every corner is a maximum) and ends the search
    assert res.n_restarts == 2 * box.RESTARTS and res.converged
