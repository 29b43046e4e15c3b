"""The default Keskar-sharpness maximiser against a brute-force reference on a panel of small trained networks.

Keskar sharpness is a maximum over a box; a maximiser that stops short reports a smaller, optimiser-shaped number.
The reference here is computed independently of ``collect.hessian.sharpness`` (its own flat-parameter closure and
its own ascent loop): the best loss seen over 60 restarts from random box corners × 50 steps of projected
sign-gradient ascent with a step annealed from 0.5·r to 0.01·r. On these nets it is within 1 % of 200 restarts ×
300 steps (measured while choosing the panel, /tmp prototype; every maximum found is a box corner).
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad_and_value, vmap

from collect.hessian.operator import ChunkedLoss
from collect.hessian.sharpness import keskar_sharpness
from collect.losses import cross_entropy
from tests.collect.hessian.tiny_nets import (  # noqa: F401 (single_thread is an autouse fixture)
    NETS,
    cpu_generator,
    single_thread,
    trained_net,
    vector_data,
)

EPSILONS = (1e-4, 1e-3, 1e-2, 5e-2)
RATIO = 0.95  # the default must reach 95 % of the reference on every case


def reference_sharpness(model: torch.nn.Module, eps: float, restarts: int = 60, steps: int = 50) -> float:
    x, y = vector_data()
    named = [(k, v.detach()) for k, v in model.named_parameters()]
    w = torch.cat([v.reshape(-1) for _, v in named])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for k, v in named:
            params[k] = theta[i : i + v.numel()].view(v.shape)
            i += v.numel()
        return cross_entropy(functional_call(model, params, (x,)), y)

    r = eps * (w.abs() + 1)
    g = torch.Generator().manual_seed(12345)
    d = r * torch.sign(torch.rand(restarts, w.numel(), generator=g, dtype=w.dtype) - 0.5)
    loss0 = float(loss(w))
    best = loss0
    ascent = vmap(grad_and_value(loss))
    for t in range(steps + 1):
        g, values = ascent(w + d)  # the loss at the current points, and the step from them
        best = max(best, float(values.max()))
        d = torch.clamp(d + (0.5 * (1 - t / steps) + 0.01) * r * torch.sign(g), -r, r)
    return 100 * (best - loss0) / (1 + loss0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])  # seed 3 caught the pre-issue-14 step (0.898 on tanh, ε = 1e-2)
@pytest.mark.parametrize("net", sorted(NETS))
def test_default_maximiser_reaches_95_percent_of_the_reference(net, seed):
    x, y = vector_data()
    model = trained_net(net, seed)
    loss = ChunkedLoss(model, cross_entropy, x, y)
    ratios, results = {}, {}
    for eps in EPSILONS:
        results[eps] = keskar_sharpness(loss, epsilon=eps, generator=cpu_generator(seed))
        ratios[eps] = results[eps].sharpness / reference_sharpness(model, eps)
    assert all(r >= RATIO for r in ratios.values()), {k: round(v, 3) for k, v in ratios.items()}
    assert all(r.n_restarts >= 12 and r.n_iter > 0 for r in results.values())
    # ``converged`` is False only when the 36-restart cap, not the round rule, ended the search (2 cases of the 60
    # here: ReLU seed 3 at ε = 5e-2 and tanh seed 2 at ε = 1e-3, both still >= 0.95 of the reference)
    assert all(r.converged or r.n_restarts == 36 for r in results.values())


def test_old_default_falls_short_on_the_panel():
    """The panel is hard enough to tell maximisers apart: one L-BFGS-B run of 20 iterations (the old default)
    misses 95 % on at least one case (measured 0.46 for the trained tanh net at ε = 1e-2)."""
    x, y = vector_data()
    model = trained_net("tanh", 0)
    loss = ChunkedLoss(model, cross_entropy, x, y)
    old = keskar_sharpness(loss, epsilon=1e-2, method="lbfgsb", max_iter=20, generator=cpu_generator(0))
    assert old.sharpness < RATIO * reference_sharpness(model, 1e-2)
