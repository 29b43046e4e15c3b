"""Fisher–Rao norm against a direct computation: one ``backward()`` per training point, ⟨θ, ∇_θ ℓ_i⟩² averaged;
and Liang et al.'s (L+1)² formula with the softmax written out by hand on a bias-free ReLU net."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.collect.hessian.tiny_nets import relu_net, single_thread, vector_data  # noqa: F401
from tests.collect.measures.test_curvature import ctx_for, run


def direct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str) -> float:
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    terms = []
    for i in range(len(y)):
        model.zero_grad()
        out = model(x[i : i + 1])
        if loss == "mse":
            li = 0.5 * (out - nn.functional.one_hot(y[i : i + 1], 3).double()).pow(2).sum()
        else:
            li = nn.functional.cross_entropy(out, y[i : i + 1])
        li.backward()
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        terms.append(float(theta @ g) ** 2)
    return float(np.mean(terms))


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_fisher_rao_matches_per_sample_backward(loss):
    x, y = vector_data()
    model = relu_net(3)  # with biases: the definition, not the homogeneous formula
    got = run("fisher_rao", ctx_for(model, x, y, loss=loss)).values
    assert got["fisher_rao_norm"] == pytest.approx(direct(model, x, y, loss), rel=1e-10)
    assert got["fisher_rao_formula_gap"] > 1e-3  # biases break the (L+1) homogeneity


def test_bias_free_relu_net_equals_the_homogeneous_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7, bias=False), nn.ReLU(), nn.Linear(7, 6, bias=False), nn.ReLU(),
                          nn.Linear(6, 3, bias=False)).double().eval()
    x, y = vector_data()
    got = run("fisher_rao", ctx_for(model, x, y)).values
    f = model(x).detach()
    dl_df = torch.softmax(f, 1) - nn.functional.one_hot(y, 3).double()  # cross-entropy: ∂ℓ/∂f = softmax(f) − e_y
    formula = 3**2 * float(((dl_df * f).sum(1) ** 2).mean())  # L + 1 = 3 weight layers
    assert got["fisher_rao_norm"] == pytest.approx(formula, rel=1e-10)
    assert got["fisher_rao_norm"] == pytest.approx(direct(model, x, y, "cross_entropy"), rel=1e-10)
    assert got["fisher_rao_formula_gap"] < 1e-10
