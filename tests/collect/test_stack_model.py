"""The stacked FCN's written-out gradients against autograd through its own forward pass.

Reference: ``StackedFCN.forward`` + ``per_run_loss`` + ``torch.autograd.grad`` on the same weights, batch and dropout
generators (so the same masks). In float64 (tolerance 1e-10 relative) the two sum the same products in different
orders, so they agree to rounding; a wrong derivative, mask or scaling is off by far more.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from collect.stack_model import StackedFCN, per_run_loss
from collect.losses import cross_entropy


def _stack(activation: str, dropout: list[float], seed: int = 0) -> tuple[StackedFCN, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    models = [nn.Sequential(nn.Linear(7, 6), act(), nn.Linear(6, 5), act(), nn.Linear(5, 3)).double() for _ in dropout]
    gens = [torch.Generator().manual_seed(10 + r) for r in range(len(dropout))]
    net = StackedFCN.from_models(models, activation, dropout, gens, torch.device("cpu"))
    x = torch.randn(len(dropout), 9, 7, dtype=torch.float64)
    y = torch.randint(0, 3, (len(dropout), 9))
    return net, x, y


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("dropout", [[0.0, 0.0, 0.0], [0.0, 0.3, 0.5]])
def test_written_out_gradients_equal_autograd(activation, dropout):
    net, x, y = _stack(activation, dropout)
    assert net.explicit_gradients
    states = [g.get_state() for g in net.generators]
    grads = [torch.empty_like(p) for p in net.params()]
    losses = net.cross_entropy_grads(x, y, grads)
    for g, s in zip(net.generators, states):  # replay the same dropout masks
        g.set_state(s)
    ref_losses = per_run_loss(cross_entropy, net.forward(x, train=True), y, fused=True)
    ref = torch.autograd.grad(ref_losses.sum(), net.params())
    torch.testing.assert_close(losses, ref_losses.detach(), rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, ref):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    if any(dropout):  # the masks matter: a different draw gives other gradients
        other = [torch.empty_like(p) for p in net.params()]
        net.cross_entropy_grads(x, y, other)
        assert not torch.allclose(other[0], grads[0])


def test_batch_norm_stacks_use_autograd():
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3)) for _ in range(2)]
    net = StackedFCN.from_models(models, "relu", [0.0, 0.0], [torch.Generator(), torch.Generator()], torch.device("cpu"))
    assert not net.explicit_gradients
