"""The stacked FCN's written-out gradients against autograd through its own forward pass, and its fused SGD step
against gradients followed by ``StackedOptimizer.step``.

Reference: ``StackedFCN.forward`` + ``per_run_loss`` + ``torch.autograd.grad`` on the same weights, batch and dropout
generators (so the same masks). In float64 (tolerance 1e-10 relative) the two sum the same products in different
orders, so they agree to rounding; a wrong derivative, mask or scaling is off by far more.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from collect.stack_model import StackedFCN, StackedOptimizer, per_run_loss
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


@pytest.mark.parametrize("momentum", [[0.0, 0.0, 0.0], [0.9, 0.5, 0.0]], ids=["plain", "momentum"])
@pytest.mark.parametrize("wd", [[0.0, 0.0, 0.0], [1e-2, 0.0, 5e-2]], ids=["no-decay", "decay"])
def test_fused_sgd_step_equals_gradients_then_step(momentum, wd):
    """Three steps of ``cross_entropy_sgd_step`` (products accumulated into the parameters or the momentum) against
    ``cross_entropy_grads`` + ``StackedOptimizer.step`` (torch.optim.SGD's formulas) on a copy, in float64: the same
    arithmetic up to the order of additions, so 1e-10 relative; a wrong sign, learning rate, decay or momentum
    order is off by far more."""
    lr = [0.1, 0.05, 0.2]
    fused, x, y = _stack("relu", [0.0, 0.2, 0.0])
    ref, _, _ = _stack("relu", [0.0, 0.2, 0.0])
    opt_fused = StackedOptimizer("sgd", fused.params(), lr, wd, momentum)
    opt_ref = StackedOptimizer("sgd", ref.params(), lr, wd, momentum)
    for _ in range(3):
        grads = [torch.empty_like(p) for p in ref.params()]
        want = ref.cross_entropy_grads(x, y, grads)
        opt_ref.step(ref.params(), grads)
        got = fused.cross_entropy_sgd_step(x, y, opt_fused)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for a, b in zip(fused.params(), ref.params()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(opt_fused.state, opt_ref.state):
        torch.testing.assert_close(a[0], b[0], rtol=1e-10, atol=1e-12)
    assert opt_fused.steps == opt_ref.steps == 3
    assert not torch.allclose(fused.params()[0], _stack("relu", [0.0, 0.2, 0.0])[0].params()[0])  # it moved
