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


def _bn_stack(activation: str, dropout: list[float]) -> tuple[StackedFCN, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    models = []
    for _ in dropout:
        m = nn.Sequential(nn.Linear(7, 6), nn.BatchNorm1d(6), act(), nn.Linear(6, 5), nn.BatchNorm1d(5), act(),
                          nn.Linear(5, 3)).double()
        for bn in (m[1], m[4]):  # γ, β away from 1, 0, so that a wrong γ or β term shows
            nn.init.uniform_(bn.weight, 0.5, 1.5)
            nn.init.uniform_(bn.bias, -0.5, 0.5)
        models.append(m)
    gens = [torch.Generator().manual_seed(10 + r) for r in range(len(dropout))]
    net = StackedFCN.from_models(models, activation, dropout, gens, torch.device("cpu"))
    return net, torch.randn(len(dropout), 9, 7, dtype=torch.float64), torch.randint(0, 3, (len(dropout), 9))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("dropout", [[0.0, 0.0], [0.0, 0.4]])
def test_written_out_batch_norm_gradients_equal_autograd(activation, dropout):
    """The batch-norm backward (δ_z = (s/B)(B g − Σg − x̂ Σ g x̂), ∂γ, ∂β) against autograd through ``forward``, and
    the running statistics updated once per call exactly as ``forward`` updates them (float64, 1e-10)."""
    net, x, y = _bn_stack(activation, dropout)
    assert net.explicit_gradients and not net.fused_sgd
    states = [g.get_state() for g in net.generators]
    running = [(n.running_mean.clone(), n.running_var.clone()) for n in net.norms]
    grads = [torch.empty_like(p) for p in net.params()]
    losses = net.cross_entropy_grads(x, y, grads)
    after = [(n.running_mean.clone(), n.running_var.clone()) for n in net.norms]
    for n, (mean, var) in zip(net.norms, running):  # replay from the same statistics and masks
        n.running_mean.copy_(mean)
        n.running_var.copy_(var)
    for g, st in zip(net.generators, states):
        g.set_state(st)
    ref_losses = per_run_loss(cross_entropy, net.forward(x, train=True), y, fused=True)
    ref = torch.autograd.grad(ref_losses.sum(), net.params())
    torch.testing.assert_close(losses, ref_losses.detach(), rtol=1e-12, atol=1e-12)
    assert len(grads) == len(ref) == 3 * 2 + 2 * 2
    for got, want in zip(grads, ref):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for n, (mean, var) in zip(net.norms, after):
        assert torch.equal(n.running_mean, mean) and torch.equal(n.running_var, var)
    with pytest.raises(ValueError, match="batch norm"):
        net.cross_entropy_sgd_step(x, y, StackedOptimizer("sgd", net.params(), [0.1] * 2, [0.0] * 2, [0.0] * 2))


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
