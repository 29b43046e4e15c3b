"""The radius search of Jiang et al.'s sharpness stops an ascent once its error rise exceeds the target: the
reference here is the same search with every ascent run to its last step (written out from the module docstring),
and both must give the same α', the same deviation at α' and the same bracketing, on trained ReLU, tanh and
batch-norm nets and on both boxes (plain and magnitude-aware), with fewer or equal evaluations."""

from __future__ import annotations

import pytest
import torch

from collect.hessian.bisection import largest_admissible
from collect.hessian.jiang_sharpness import errors_and_grads, sharpness_radius
from collect.hessian.operator import ChunkedLoss
from collect.losses import cross_entropy
from tests.collect.hessian.tiny_nets import cpu_generator, single_thread, trained_net, vector_data  # noqa: F401


def full_ascent_search(loss: ChunkedLoss, magnitude_eps, *, restarts=4, n_steps=8, target=0.1, seed=0):
    """The search of ``sharpness_radius`` at its defaults with no early stop: (α', deviation, bracketed, passes)."""
    generator = cpu_generator(seed)
    w = loss.theta0
    base = float(errors_and_grads(loss, w.unsqueeze(0), with_grad=False)[0][0])
    signs = (2 * torch.randint(0, 2, (restarts, w.numel()), generator=generator) - 1).to(w.dtype)
    signs[0] = torch.where(loss.value_and_grad(w)[1] >= 0, 1.0, -1.0).to(w.dtype)

    passes = [1]

    def deviation(alpha: float) -> float:
        passes[0] += n_steps + 1
        r = alpha * w.abs() + magnitude_eps if magnitude_eps is not None else torch.full_like(w, alpha)
        u, worst = signs * r, 0.0
        for step in range(n_steps + 1):
            err, g = errors_and_grads(loss, w + u, with_grad=step < n_steps)
            worst = max(worst, float(err.max()))
            if g is not None:
                u = torch.clamp(u + r * torch.sign(g), -r, r)
        return worst - base

    if magnitude_eps is not None and (floor := deviation(0.0)) > target:
        return 0.0, floor, False, passes[0]
    return *largest_admissible(deviation, target=target, start=1e-2, n_iter=20, rel_tol=0.01), passes[0]


@pytest.mark.parametrize("net", ["relu", "tanh", "bn"])
@pytest.mark.parametrize("magnitude_eps", [None, 1e-3])
def test_early_stopped_ascents_give_the_full_search_result(net, magnitude_eps):
    x, y = vector_data()
    loss = ChunkedLoss(trained_net(net), cross_entropy, x, y)
    got = sharpness_radius(loss, magnitude_eps=magnitude_eps, generator=cpu_generator(0))
    alpha, dev, bracketed, passes = full_ascent_search(loss, magnitude_eps)
    assert got.bracketed == bracketed and bracketed
    assert got.alpha == alpha and got.deviation == dev  # the same decisions, so the same floats
    assert 0 < got.alpha and got.deviation <= 0.1
    # the search counts passes from its first ascent (the reference also counts the base error's pass); an
    # inadmissible α whose rise exceeds the target before the last step saves the remaining passes
    assert got.n_evals < passes - 1


def test_the_epsilon_box_alone_reports_its_full_rise():
    x, y = vector_data()
    loss = ChunkedLoss(trained_net("relu"), cross_entropy, x, y)
    got = sharpness_radius(loss, magnitude_eps=0.5, generator=cpu_generator(0))
    alpha, dev, bracketed, _ = full_ascent_search(loss, 0.5)
    assert (got.alpha, got.bracketed) == (0.0, False) == (alpha, bracketed)
    assert got.deviation == dev > 0.1
