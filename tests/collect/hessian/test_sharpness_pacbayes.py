"""Keskar sharpness against closed forms on quadratics; PAC-Bayes σ against the closed form of a linear classifier."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch
from torch import nn

from collect.hessian.operator import ChunkedLoss
from collect.hessian.pacbayes import isotropic_std, largest_admissible_sigma, magnitude_aware_std, zero_one_error
from collect.hessian.sharpness import keskar_sharpness, maximize_in_box, multistart_box_max
from collect.losses import squared_error
from tests.collect.hessian.tiny_nets import cpu_generator, single_thread  # noqa: F401

EPS = 1e-3


def quadratic(a: torch.Tensor, m: torch.Tensor, c: float):
    """L(w) = c + ½ Σ a_i (w_i − m_i)², returned as a value-and-gradient closure."""

    def value_and_grad(w: torch.Tensor) -> tuple[float, torch.Tensor]:
        d = w - m
        return float(c + 0.5 * (a * d * d).sum()), a * d

    return value_and_grad


@pytest.mark.parametrize("method", ["lbfgsb", "pga"])
def test_convex_quadratic_reaches_the_far_corner(method):
    """With every m_i outside the box the maximum is the corner away from m: Δ_i = −r_i sign(m_i − w_i),
    L_max = c + ½ Σ a_i (|m_i − w_i| + r_i)². Both methods land on it to rounding (the bounds are active)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(50, dtype=torch.float64, generator=g)
    a = torch.rand(50, dtype=torch.float64, generator=g) + 0.1
    m = w + torch.sign(torch.randn(50, dtype=torch.float64, generator=g)) * 0.5
    c = 0.3
    r = EPS * (w.abs() + 1)
    res = maximize_in_box(quadratic(a, m, c), w, r, method=method, max_iter=30, generator=cpu_generator(1))
    l0 = c + 0.5 * float((a * (w - m) ** 2).sum())
    lmax = c + 0.5 * float((a * ((m - w).abs() + r) ** 2).sum())
    assert res.loss_at_w == pytest.approx(l0, rel=1e-14)
    assert res.loss_max == pytest.approx(lmax, rel=1e-12)
    assert res.sharpness == pytest.approx(100 * (lmax - l0) / (1 + l0), rel=1e-8)


def test_indefinite_quadratic_at_a_critical_point():
    """At w = m (gradient 0) with curvatures of both signs, max over the box = Σ_{a_i>0} ½ a_i r_i² (corners in the
    convex directions, 0 in the concave ones). With c = 2 the Keskar normalisation divides the *difference* by 3;
    the operator-precedence bug (L' − L/(1+L)) would give a value near 100·(2 − 2/3) instead."""
    g = torch.Generator().manual_seed(2)
    w = torch.randn(40, dtype=torch.float64, generator=g)
    a = torch.linspace(-3, 2, 40, dtype=torch.float64)
    r = EPS * (w.abs() + 1)
    res = maximize_in_box(quadratic(a, w.clone(), 2.0), w, r, method="lbfgsb", max_iter=100, generator=cpu_generator(3))
    expected = 100 * float((0.5 * a.clamp(min=0) * r * r).sum()) / 3.0
    # L-BFGS-B stops the concave coordinates near 0 rather than at 0: their loss deficit is second order in the
    # leftover |Δ_i| ≪ r_i, well inside 1e-6 relative.
    assert res.sharpness == pytest.approx(expected, rel=1e-6)


def test_keskar_sharpness_of_a_least_squares_model_in_full_space_and_subspace():
    """Through the real loss: positive, reproducible per seed, and the subspace variant (Keskar et al.'s A y)
    runs and respects Δ = 0 being feasible (value ≥ 0). Its value has no closed form to compare with."""
    torch.manual_seed(0)
    model = nn.Linear(6, 3).double()
    x = torch.randn(30, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    loss = ChunkedLoss(model, squared_error, x, y)
    full = keskar_sharpness(loss, epsilon=EPS, generator=cpu_generator(0))
    again = keskar_sharpness(loss, epsilon=EPS, generator=cpu_generator(0))
    sub = keskar_sharpness(loss, epsilon=EPS, subspace_dim=5, generator=cpu_generator(0))
    assert full.sharpness > 0 and full.sharpness == again.sharpness
    assert sub.sharpness >= 0 and np.isfinite(sub.sharpness)
    with pytest.raises(ValueError, match="subspace_dim"):
        keskar_sharpness(loss, subspace_dim=1000, generator=cpu_generator(0))


def _linear_classifier(seed: int = 0, n: int = 400, d: int = 40):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, dtype=torch.float64, generator=g)
    teacher = torch.randn(d, dtype=torch.float64, generator=g)
    y = (x @ teacher > 0).long()
    model = nn.Linear(d, 2, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.stack([-teacher, teacher]) + 0.3 * torch.randn(2, d, dtype=torch.float64, generator=g))
    return model, x, y


def _closed_form_sigma(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: float, magnitude: bool) -> float:
    """Weight noise u changes the margin m_i = (W_y − W_o)·x_i by (u_y − u_o)·x_i ~ N(0, v_i σ²) with
    v_i = 2‖x_i‖² (isotropic) or Σ_j (W_yj² + W_oj²) x_ij² (magnitude-aware, ε = 0); so
    E[err(σ)] = mean_i Φ(−m_i / (σ sqrt(v_i))). Returns the σ where E[err] − err(0) = target."""
    w = model.weight.detach()
    wy, wo = w[y], w[1 - y]
    m = ((wy - wo) * x).sum(1).numpy()
    v = (2 * (x * x).sum(1) if not magnitude else ((wy**2 + wo**2) * x * x).sum(1)).numpy()
    base = float((m < 0).mean())

    def excess(sigma: float) -> float:
        return float(scipy.stats.norm.cdf(-m / (sigma * np.sqrt(v))).mean()) - base - target

    return scipy.optimize.brentq(excess, 1e-6, 100.0)


@pytest.mark.parametrize("magnitude", [False, True], ids=["isotropic", "magnitude"])
def test_pacbayes_sigma_matches_the_closed_form_of_a_linear_classifier(magnitude):
    """σ is a standard deviation: the bisection lands within 10 % of the closed-form σ* ≈ 0.4-1.2.

    Tolerance: one draw perturbs all 400 points at once, so the Monte-Carlo error is that of 160 draws — measured
    over seeds with 100 draws, the ratio σ/σ* has mean 1.01 and sd 2.5 % (isotropic) / 4.4 % (magnitude-aware);
    160 draws give about 2-3.5 %, so 10 % is ~3 sd. Passing σ² where σ is meant would be off by a factor σ*
    (30-60 %), and a biased estimate of E[err] would move the root systematically."""
    model, x, y = _linear_classifier()
    target = 0.1
    error = ChunkedLoss(model, zero_one_error, x, y, chunk_size=400)
    noise = magnitude_aware_std(0.0) if magnitude else isotropic_std
    res = largest_admissible_sigma(error, noise_std=noise, target=target, n_draws=160, n_iter=12, seed=0)
    want = _closed_form_sigma(model, x, y, target, magnitude)
    assert res.bracketed
    assert res.sigma == pytest.approx(want, rel=0.10)
    assert res.flatness == pytest.approx(1 / res.sigma**2)
    assert res.deviation <= target


def _regression(seed: int = 0, n: int = 30, d: int = 6, k: int = 3):
    """A linear model under ½·mean‖f(x) − onehot(y)‖²: its loss is a convex quadratic in the parameters."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, k).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(k, d, generator=g, dtype=torch.float64))
        model.bias.copy_(torch.randn(k, generator=g, dtype=torch.float64))
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)

    def half_sq(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return 0.5 * (logits - nn.functional.one_hot(labels, logits.shape[-1]).to(logits.dtype)).pow(2).sum(1).mean()

    return model, x, y, half_sq


@pytest.mark.parametrize("eps", [1e-3, 5e-2])
def test_subspace_sharpness_equals_the_enumerated_corner_maximum_of_a_convex_quadratic(eps):
    """A convex function attains its maximum over a box at a vertex, so with p = 6 the exact
    subspace maximum is the best of the 2⁶ = 64 corners y_j = ±ε(|(Aᵀw)_j| + 1), enumerated here with the test's own
    loss closure (A is the orthonormal basis the maximiser drew, returned on the result). The default maximiser
    lands on that corner (to 1e-9 relative: both evaluate the same point); a box 10× too large, or the wrong
    box formula, gives another number."""
    model, x, y, half_sq = _regression()
    loss = ChunkedLoss(model, half_sq, x, y)
    res = keskar_sharpness(loss, epsilon=eps, subspace_dim=6, generator=cpu_generator(7))
    a = res.basis
    assert a is not None and a.shape == (loss.dim, 6)
    torch.testing.assert_close(a.T @ a, torch.eye(6, dtype=torch.float64), atol=1e-12, rtol=0)
    w = torch.cat([model.weight.detach().reshape(-1), model.bias.detach()])
    r = eps * ((a.T @ w).abs() + 1)
    corners = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=6)), dtype=torch.float64) * r

    def closure(theta: torch.Tensor) -> float:
        wt, b = theta[:18].view(3, 6), theta[18:]
        return float(half_sq(x @ wt.T + b, y))

    l0 = closure(w)
    lmax = max(closure(w + a @ c) for c in corners)
    assert res.sharpness == pytest.approx(100 * (lmax - l0) / (1 + l0), rel=1e-9)


@pytest.mark.parametrize("noise", ["isotropic", "magnitude"])
def test_batched_pacbayes_search_equals_one_draw_at_a_time(noise):
    """The vmapped draws (in batches of 16 and of 3) and the one-at-a-time loop see the same draws, so the
    whole search — every tested σ and the returned one — agrees to float64 rounding."""
    model, x, y = _linear_classifier()
    error = ChunkedLoss(model, zero_one_error, x, y, chunk_size=150)
    std = isotropic_std if noise == "isotropic" else magnitude_aware_std(1e-3)
    runs = [
        largest_admissible_sigma(error, noise_std=std, n_draws=10, seed=3, draw_batch=b) for b in (None, 16, 3)
    ]
    for other in runs[1:]:
        assert other.sigma == pytest.approx(runs[0].sigma, rel=1e-12)
        assert other.deviation == pytest.approx(runs[0].deviation, abs=1e-12)
        assert other.n_evals == runs[0].n_evals
    assert runs[0].bracketed


def test_batched_sharpness_restarts_equal_one_restart_at_a_time():
    """The multistart maximiser with restarts evaluated in one vmapped pass and with a loop over
    restarts (value_and_grad row by row) takes the same path and returns the same value (float64 rounding)."""
    _, x, y, half_sq = _regression(seed=1)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double().eval()
    loss = ChunkedLoss(net, half_sq, x, y, chunk_size=12)
    w = loss.theta0
    r = 1e-2 * (w.abs() + 1)

    def one_at_a_time(thetas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [loss.value_and_grad(t) for t in thetas]
        return torch.tensor([v for v, _ in pairs], dtype=w.dtype), torch.stack([g for _, g in pairs])

    batched = multistart_box_max(
        loss.values_and_grads_batch, loss.value_and_grad, w, r, generator=cpu_generator(4), hvp_batch=loss.hvp_batch
    )
    looped = multistart_box_max(
        one_at_a_time, loss.value_and_grad, w, r, generator=cpu_generator(4), hvp_batch=loss.hvp_batch
    )
    assert batched.sharpness == pytest.approx(looped.sharpness, rel=1e-10)
    assert (batched.n_restarts, batched.n_iter) == (looped.n_restarts, looped.n_iter)
