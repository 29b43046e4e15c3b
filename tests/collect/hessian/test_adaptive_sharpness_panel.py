"""The default adaptive-sharpness maximiser against a brute-force reference on a panel of small trained networks.

Adaptive sharpness is a maximum over a scaled ball; the Auto-PGD rounds stop a round once its best has not risen by
more than ``TOL`` · (best − L(w)) for ``PATIENCE`` steps, and a maximiser that stops short reports a smaller number.
The reference is independent of ``collect.hessian.adaptive_sharpness`` (its own flat-parameter closure and ascent
loop): the best loss seen over 60 restarts (random points of the sphere or box surface) × 100 steps of projected
steepest ascent with a step annealed from 0.5·ρ to 0.01·ρ, and no stopping rule. The panel: trained ReLU, tanh and
batch-norm nets, seeds 0-4, the ℓ∞ ball at ρ = 1e-3 (the default), 1e-2 and 5e-2 and the ℓ2 ball at ρ = 0.1 (the
default), 0.5 and 1 (relative units, c = |w|), where the loss rise is far from linear.

One case is a known miss of the multistart design, not of the stopping rule: on the batch-norm net, seed 2, ℓ∞ ρ = 1e-2
the 12 restarts of the first round all end in lower maxima, two of them refind the best of those within 1 %, and the
round rule stops at 0.41 of the reference; running every one of the 20 steps of each restart gives the same value
(asserted), and 36 restarts find the reference's maximum.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad_and_value, vmap

from collect.hessian.adaptive_sharpness import worst_case_ball_max
from collect.hessian.operator import ChunkedLoss
from collect.losses import cross_entropy
from tests.collect.hessian.tiny_nets import (  # noqa: F401 (single_thread is an autouse fixture)
    NETS,
    cpu_generator,
    single_thread,
    trained_net,
    vector_data,
)

RHOS = {"linf": (1e-3, 1e-2, 5e-2), "l2": (0.1, 0.5, 1.0)}
RATIO = 0.95  # the default must reach 95 % of the reference on every case but KNOWN_MISSES
KNOWN_MISSES = {("bn", 2, "linf", 1e-2)}


def reference_rise(model: torch.nn.Module, rho: float, norm: str, restarts: int = 60, steps: int = 100) -> float:
    """max_{‖u‖_p ≤ ρ} L(w + |w| ⊙ u) − L(w) by many long annealed ascents (module docstring)."""
    x, y = vector_data()
    named = [(k, v.detach()) for k, v in model.named_parameters()]
    w = torch.cat([v.reshape(-1) for _, v in named])
    c = w.abs()

    def loss(u: torch.Tensor) -> torch.Tensor:
        theta, params, i = w + c * u, {}, 0
        for k, v in named:
            params[k] = theta[i : i + v.numel()].view(v.shape)
            i += v.numel()
        return cross_entropy(functional_call(model, params, (x,)), y)

    g = torch.Generator().manual_seed(54321)
    if norm == "linf":
        u = rho * torch.sign(torch.rand(restarts, w.numel(), generator=g, dtype=w.dtype) - 0.5)
    else:
        z = torch.randn(restarts, w.numel(), generator=g, dtype=w.dtype)
        u = rho * z / z.norm(dim=1, keepdim=True)
    loss0 = float(loss(torch.zeros_like(w)))
    best = loss0
    ascent = vmap(grad_and_value(loss))
    for t in range(steps + 1):
        grad, values = ascent(u)
        best = max(best, float(values.max()))
        eta = (0.5 * (1 - t / steps) + 0.01) * rho
        if norm == "linf":
            u = torch.clamp(u + eta * torch.sign(grad), -rho, rho)
        else:
            u = u + eta * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-30)
            u = u * torch.clamp(rho / u.norm(dim=1, keepdim=True), max=1.0)
    return best - loss0


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("net", sorted(NETS))
def test_default_maximiser_reaches_95_percent_of_the_reference(net, seed):
    x, y = vector_data()
    model = trained_net(net, seed)
    loss = ChunkedLoss(model, cross_entropy, x, y)
    w = loss.theta0
    ratios = {}
    for norm, rhos in RHOS.items():
        for rho in rhos:
            got = worst_case_ball_max(loss.values_and_grads_batch, w, w.abs(), rho=rho, norm=norm,
                                      generator=cpu_generator(seed))
            ratios[norm, rho] = got.sharpness / reference_rise(model, rho, norm)
            if (net, seed, norm, rho) in KNOWN_MISSES:
                every_step = worst_case_ball_max(loss.values_and_grads_batch, w, w.abs(), rho=rho, norm=norm,
                                                 generator=cpu_generator(seed), patience=0)
                assert got.sharpness == pytest.approx(every_step.sharpness, rel=1e-3)
                assert ratios.pop((norm, rho)) < RATIO  # still a miss: otherwise drop it from KNOWN_MISSES
    assert all(r >= RATIO for r in ratios.values()), {k: round(v, 3) for k, v in ratios.items()}


def test_the_stopping_rule_saves_evaluations_without_changing_the_value():
    """Over the panel's nets (seed 0) at the default radii, stopping stale rounds costs fewer evaluations in all than
    running all 20 steps (a stopped round can leave its restarts short of refinding the best, and so add a round,
    as on the ReLU net), and moves no value by more than the 1 % the round rule reports it to."""
    x, y = vector_data()
    evals = {"stopped": 0, "full": 0}
    for net in sorted(NETS):
        loss = ChunkedLoss(trained_net(net, 0), cross_entropy, x, y)
        w = loss.theta0
        for norm, rhos in RHOS.items():
            kw = dict(rho=rhos[0], norm=norm)
            stopped = worst_case_ball_max(loss.values_and_grads_batch, w, w.abs(), generator=cpu_generator(0), **kw)
            full = worst_case_ball_max(loss.values_and_grads_batch, w, w.abs(), generator=cpu_generator(0),
                                       patience=0, **kw)
            evals["stopped"] += stopped.n_evals
            evals["full"] += full.n_evals
            assert stopped.sharpness == pytest.approx(full.sharpness, rel=1e-2), (net, norm)
    assert evals["stopped"] < 0.8 * evals["full"], evals
