"""Tests for collect.optim: every optimizer lowers a toy loss; SAM and Entropy-SGD match hand computations."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from collect.config import ModelConfig, OptimConfig, SpecError
from collect.models import build_model
from collect.optim import build_optimizer
from collect.optim.entropy_sgd import ALPHA

# Learning rates that suit each optimizer on the toy problem below.
OPTIMIZER_CASES = {
    "sgd": dict(optimizer="sgd", lr=0.1),
    "sgd_momentum": dict(optimizer="sgd", lr=0.05, momentum=0.9),
    "gd": dict(optimizer="gd", lr=0.1),
    "adam": dict(optimizer="adam", lr=0.01),
    "adamw": dict(optimizer="adamw", lr=0.01),
    "rmsprop": dict(optimizer="rmsprop", lr=0.01),
    "adagrad": dict(optimizer="adagrad", lr=0.1),
    "sam": dict(optimizer="sam", lr=0.1, sam_rho=0.05),
    "sam_adaptive": dict(optimizer="sam", lr=0.1, sam_rho=0.5, sam_adaptive=True),
    "sam_adam": dict(optimizer="sam", lr=0.01, sam_rho=0.05, sam_base="adam"),
    "entropy_sgd": dict(optimizer="entropy_sgd", lr=0.1, esgd_gamma=1.0, esgd_L=3),
}


def toy_problem(n: int = 128):
    """Three Gaussian blobs in 5-D; a one-hidden-layer FCN and a seeded minibatch sampler."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    x = 2 * torch.randn(3, 5, generator=g)[y] + torch.randn(n, 5, generator=g)
    model = build_model(ModelConfig(arch="fcn", width=16, depth=1), (5,), 3, seed=0)
    sampler = torch.Generator().manual_seed(1)

    def next_batch():
        idx = torch.randint(0, n, (32,), generator=sampler)
        return x[idx], y[idx]

    return model, x, y, next_batch


def full_loss(model, x, y) -> float:
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


def train(case: dict, weight_decay: float, steps: int = 25):
    model, x, y, next_batch = toy_problem()
    step = build_optimizer(OptimConfig(weight_decay=weight_decay, **case), model, F.cross_entropy)
    before = full_loss(model, x, y)
    torch.manual_seed(0)
    losses = [step(next_batch) for _ in range(steps)]
    return model, step, before, full_loss(model, x, y), losses


def param_norm(model: nn.Module) -> float:
    return math.sqrt(sum(p.detach().pow(2).sum().item() for p in model.parameters()))


@pytest.mark.parametrize("name", OPTIMIZER_CASES)
def test_every_optimizer_lowers_the_loss_with_and_without_weight_decay(name):
    case = OPTIMIZER_CASES[name]
    model, step, before, after, losses = train(case, weight_decay=0.0)
    # The initial full-data loss is ~1.5 and all optimizers reach < 0.6 in 25 steps (measured 0.01-0.46);
    # a broken update (sign error, no step) stays near 1.5.
    assert after < 0.6 * before, (before, after)
    assert all(loss.requires_grad is False and loss.ndim == 0 for loss in losses)
    assert isinstance(step.optimizer, torch.optim.Optimizer)
    wd_model, _, _, wd_after, _ = train(case, weight_decay=0.1)
    assert wd_after < 0.6 * before
    # L2 / decoupled decay must shrink the weights relative to the same run without it.
    assert param_norm(wd_model) < param_norm(model)


def test_torch_optimizer_settings_are_passed_through():
    model, *_ = toy_problem()
    cfg = OptimConfig(optimizer="rmsprop", lr=0.02, momentum=0.5, weight_decay=0.01)
    group = build_optimizer(cfg, model, F.cross_entropy).optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.02, 0.5, 0.01)
    adamw = build_optimizer(OptimConfig(optimizer="adamw", lr=0.01, weight_decay=0.2), model, F.cross_entropy)
    assert isinstance(adamw.optimizer, torch.optim.AdamW) and adamw.optimizer.param_groups[0]["weight_decay"] == 0.2
    sam = build_optimizer(OptimConfig(optimizer="sam", sam_rho=0.1, sam_base="rmsprop"), model, F.cross_entropy)
    assert isinstance(sam.optimizer, torch.optim.RMSprop)


def test_bad_settings_name_the_field():
    model, *_ = toy_problem()
    with pytest.raises(SpecError, match="optim.momentum"):
        build_optimizer(OptimConfig(optimizer="adam", momentum=0.9), model, F.cross_entropy)
    with pytest.raises(SpecError, match="optim.sam_rho"):
        build_optimizer(OptimConfig(optimizer="sam", sam_rho=0.0), model, F.cross_entropy)
    with pytest.raises(SpecError, match="optim.esgd_L"):
        build_optimizer(OptimConfig(optimizer="entropy_sgd", esgd_L=0), model, F.cross_entropy)
    with pytest.raises(SpecError, match="optim.optimizer"):
        build_optimizer(OptimConfig(optimizer="lbfgs"), model, F.cross_entropy)


# ------------------------------------------------------------------ hand computations on a quadratic


def quadratic_problem(n: int = 20, d: int = 4, batches: int = 1):
    """Linear regression with MSE: L(w, b) = mean((Xw + b - y)^2), a quadratic with known gradient."""
    g = torch.Generator().manual_seed(3)
    data = [(torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64))
            for _ in range(batches)]
    model = nn.Linear(d, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, d, generator=g, dtype=torch.float64))
        model.bias.fill_(0.3)
    return model, data


def mse(out, target):
    return (out.squeeze(-1) - target).pow(2).mean()


def grad_np(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """∇ of mean((Xw + b - y)^2) at theta = (w, b), by hand."""
    r = x @ theta[:-1] + theta[-1] - y
    return np.concatenate([2 * x.T @ r / len(y), [2 * r.mean()]])


def theta_of(model: nn.Linear) -> np.ndarray:
    return np.concatenate([model.weight.detach().numpy().ravel(), model.bias.detach().numpy()])


def cycle(data):
    it = iter(range(10**6))
    return lambda: data[next(it) % len(data)]


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_step_uses_gradient_at_the_hand_computed_perturbation(adaptive):
    model, data = quadratic_problem()
    x, y = (t.numpy() for t in data[0])
    rho, lr = 0.2, 0.05
    w = theta_of(model)
    g = grad_np(w, x, y)
    if adaptive:  # ASAM: eps = rho T^2 g / ||T g||, T = |w|
        eps = rho * w**2 * g / np.linalg.norm(np.abs(w) * g)
    else:  # SAM: eps = rho g / ||g||
        eps = rho * g / np.linalg.norm(g)
    expected = w - lr * grad_np(w + eps, x, y)
    step = build_optimizer(OptimConfig(optimizer="sam", lr=lr, sam_rho=rho, sam_adaptive=adaptive), model, mse)
    loss = step(cycle(data))
    # float64 throughout: agreement to ~1e-12 expected; 1e-10 leaves room for summation order.
    np.testing.assert_allclose(theta_of(model), expected, rtol=0, atol=1e-10)
    assert loss.item() == pytest.approx(np.mean((x @ w[:-1] + w[-1] - y) ** 2), rel=1e-12)
    # the step must differ from plain SGD, or the test would not see a missing perturbation
    assert np.abs(expected - (w - lr * g)).max() > 1e-4


def test_sam_restores_batch_norm_statistics_of_the_unperturbed_pass():
    model = build_model(ModelConfig(arch="fcn", width=8, depth=1, batch_norm=True), (5,), 3, seed=0)
    reference = copy.deepcopy(model)
    batch = (torch.randn(16, 5), torch.randint(0, 3, (16,)))
    build_optimizer(OptimConfig(optimizer="sam", sam_rho=0.5), model, F.cross_entropy)(lambda: batch)
    reference(batch[0])  # one forward pass at the unperturbed weights, in train mode
    for b, r in zip(model.buffers(), reference.buffers()):
        torch.testing.assert_close(b, r)


def entropy_sgd_by_hand(theta, data_seq, lr, gamma, inner_lr, L, momentum, wd, outer_steps):
    """Algorithm 1 of Chaudhari et al. (eps = 0) with torch-style SGD momentum/weight decay, in numpy."""
    buf = None
    k = 0
    for _ in range(outer_steps):
        xp, mu = theta.copy(), theta.copy()
        for _ in range(L):
            x, y = data_seq[k % len(data_seq)]
            k += 1
            xp = xp - inner_lr * (grad_np(xp, x, y) - gamma * (theta - xp))
            mu = (1 - ALPHA) * mu + ALPHA * xp
        g = gamma * (theta - mu) + wd * theta
        buf = g if buf is None else momentum * buf + g
        theta = theta - lr * buf
    return theta


def test_entropy_sgd_matches_algorithm_1_by_hand():
    model, data = quadratic_problem(batches=3)
    data_np = [(x.numpy(), y.numpy()) for x, y in data]
    cfg = dict(lr=0.3, gamma=0.5, inner_lr=0.1, L=4, momentum=0.9, wd=0.01)
    expected = entropy_sgd_by_hand(theta_of(model), data_np, outer_steps=2, **cfg)
    step = build_optimizer(
        OptimConfig(optimizer="entropy_sgd", lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["wd"],
                    esgd_gamma=cfg["gamma"], esgd_inner_lr=cfg["inner_lr"], esgd_L=cfg["L"], esgd_eps=0.0),
        model, mse)
    calls = []
    data_fn = cycle(data)

    def next_batch():
        calls.append(1)
        return data_fn()

    first = step(next_batch)
    step(next_batch)
    assert len(calls) == 2 * cfg["L"]  # a fresh minibatch for every Langevin step
    np.testing.assert_allclose(theta_of(model), expected, rtol=0, atol=1e-10)  # float64, same equations
    x0, y0 = data_np[0]
    w0 = theta_of(quadratic_problem(batches=3)[0])
    assert first.item() == pytest.approx(np.mean((x0 @ w0[:-1] + w0[-1] - y0) ** 2), rel=1e-12)


def test_entropy_sgd_with_large_gamma_is_close_to_sgd():
    # For a quadratic with Hessian H the Langevin iterates (eps = 0) relax to x - (H + γ)^-1 g, so the outer
    # gradient γ(x - μ) → γ (H + γ)^-1 g = g (1 - O(‖H‖/γ)). ‖H‖ ≈ 2·(1 + sqrt(d/n))² ≈ 5 here, γ = 1000:
    # about 0.5 % off SGD; 2 % tolerance. η'γ = 0.9 keeps the inner iteration stable (contraction 0.1).
    model, data = quadratic_problem()
    sgd_model = copy.deepcopy(model)
    gamma = 1000.0
    esgd = build_optimizer(OptimConfig(optimizer="entropy_sgd", lr=0.05, esgd_gamma=gamma, esgd_inner_lr=0.9 / gamma,
                                       esgd_L=30, esgd_eps=0.0), model, mse)
    sgd = build_optimizer(OptimConfig(optimizer="sgd", lr=0.05), sgd_model, mse)
    start = theta_of(model)
    esgd(cycle(data))
    sgd(cycle(data))
    delta_esgd, delta_sgd = theta_of(model) - start, theta_of(sgd_model) - start
    assert np.linalg.norm(delta_esgd - delta_sgd) < 0.02 * np.linalg.norm(delta_sgd)


def test_entropy_sgd_langevin_noise_has_the_documented_scale():
    # Zero loss: with L = 1 the only motion is the noise. x'_1 = x + sqrt(η') ε ξ, μ = x + α sqrt(η') ε ξ,
    # so the update is x ← x + lr γ α sqrt(η') ε ξ: per-coordinate std lr γ α sqrt(η') ε.
    model = nn.Linear(100, 100, bias=False)
    lr, gamma, inner_lr, eps = 0.5, 2.0, 0.04, 0.01
    step = build_optimizer(OptimConfig(optimizer="entropy_sgd", lr=lr, esgd_gamma=gamma, esgd_inner_lr=inner_lr,
                                       esgd_L=1, esgd_eps=eps), model, lambda out, y: 0.0 * out.sum())
    before = model.weight.detach().clone()
    torch.manual_seed(0)
    step(lambda: (torch.randn(2, 100), None))
    delta = (model.weight.detach() - before).flatten()
    expected_std = lr * gamma * ALPHA * math.sqrt(inner_lr) * eps
    # 10^4 iid draws: relative standard error of the std ≈ 1/sqrt(2·10^4) = 0.7 %; 5 % tolerance.
    assert delta.std().item() == pytest.approx(expected_std, rel=0.05)
    assert abs(delta.mean().item()) < 5 * expected_std / 100


# ------------------------------------------------------------------ deepcopy independence


@pytest.mark.parametrize("name", OPTIMIZER_CASES)
def test_deepcopy_of_model_and_step_is_an_independent_pair(name):
    case = OPTIMIZER_CASES[name]
    model, x, y, next_batch = toy_problem()
    step = build_optimizer(OptimConfig(weight_decay=0.01, **case), model, F.cross_entropy)
    for _ in range(2):  # build optimizer state (momentum buffers, Adam moments)
        step(next_batch)
    model2, step2 = copy.deepcopy((model, step))
    copied_params = {id(p) for g in step2.optimizer.param_groups for p in g["params"]}
    assert copied_params == {id(p) for p in model2.parameters()}
    assert step2.model is model2
    batches = [next_batch() for _ in range(5)]
    torch.manual_seed(7)
    step2(cycle(batches))
    for p, p2 in zip(model.parameters(), model2.parameters()):
        assert not torch.equal(p, p2)  # the copy moved, the original did not follow
    torch.manual_seed(7)
    step(cycle(batches))
    # same state, same batches, same noise seed: the original now lands on the copy's iterate
    for p, p2 in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(p, p2, rtol=0, atol=0)
