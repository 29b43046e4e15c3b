"""EP's log P(f) against exact orthant probabilities (closed forms, scipy's multivariate normal CDF) and against an
unbiased importance-sampling estimate; its tilted moments against scipy and 60-digit arithmetic."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import scipy.stats
import torch

from collect.boolean import boolean_inputs
from collect.nngp.ep import ep_log_prob, tilted_moments
from collect.nngp.importance import importance_log_prob
from collect.nngp.kernels import relu_nngp_kernel


def _prior_signs(k: torch.Tensor, seed: int) -> torch.Tensor:
    """f = sign(z) for z ~ N(0, K): a function the prior actually produces (P(f) not astronomically small)."""
    g = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(k + 1e-12 * torch.eye(len(k), dtype=k.dtype))
    z = chol @ torch.randn(len(k), generator=g, dtype=k.dtype)
    return torch.where(z > 0, 1.0, -1.0).double()


def _exact_log_prob(k: torch.Tensor, f: torch.Tensor) -> float:
    """log P(f z > 0) = log P(−D z ≤ 0) with −D z ~ N(0, D K D), from scipy's Genz integration.

    abseps = 1e-6 against probabilities ≥ e^-7 ≈ 1e-3 here keeps scipy's own error below 1e-3 nats."""
    d = np.diag(f.numpy())
    cov = d @ k.numpy() @ d
    n = len(f)
    p = scipy.stats.multivariate_normal.cdf(np.zeros(n), mean=np.zeros(n), cov=cov, abseps=1e-6, releps=1e-5, maxpts=50_000 * n, rng=0)
    assert p > 1e-3, "keep test probabilities where abseps gives < 1e-3 nats"
    return math.log(p)


def test_independent_points_are_exact():
    """With a diagonal kernel the sites never interact and EP is exact: P(f) = 2^-n."""
    k = torch.diag(torch.tensor([0.5, 1.0, 2.0, 3.0, 10.0], dtype=torch.float64))
    f = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0])
    result = ep_log_prob(k, f)
    assert result.converged
    assert result.log_prob == pytest.approx(5 * math.log(0.5), abs=1e-9)
    assert ep_log_prob(k[:1, :1], f[:1]).log_prob == pytest.approx(math.log(0.5), abs=1e-12)


@pytest.mark.parametrize("rho,schedule", [(-0.9, "parallel"), (-0.3, "parallel"), (0.4, "sequential"), (0.9, "sequential")])
def test_two_points_against_the_closed_form(rho, schedule):
    """P(z1 > 0, ±z2 > 0) = 1/4 ± arcsin(ρ)/(2π) (Sheppard). Tolerance 0.05 nats: EP's error in 2-D is largest at
    strong correlation (0.048 nats measured at |ρ| = 0.95) and below 0.01 nats for |ρ| ≤ 0.5."""
    k = torch.tensor([[2.0, rho * math.sqrt(2.0 * 0.5)], [rho * math.sqrt(2.0 * 0.5), 0.5]], dtype=torch.float64)
    for f2 in (1.0, -1.0):
        exact = math.log(0.25 + f2 * math.asin(rho) / (2 * math.pi))
        got = ep_log_prob(k, torch.tensor([1.0, f2]), schedule=schedule).log_prob
        assert got == pytest.approx(exact, abs=0.05 if abs(rho) > 0.5 else 0.01)


def _small_cases():
    rng = np.random.default_rng(0)
    cases = []
    for i, n in enumerate((4, 10)):
        a = rng.normal(size=(n, n + 5))
        cov = a @ a.T
        s = np.sqrt(np.diag(cov))
        k = torch.tensor(cov / np.outer(s, s) * rng.uniform(0.5, 2.0))  # random correlation matrix, random scale
        cases.append((f"wishart{n}", k, _prior_signs(k, i)))
        x = torch.tensor(rng.normal(size=(n, 8)))
        k = relu_nngp_kernel(x, 2, 1.0, 0.1)
        cases.append((f"arccos{n}", k, _prior_signs(k, 10 + i)))
    boolean = relu_nngp_kernel(torch.tensor(boolean_inputs()), 2, 1.0, 0.1)[:10, :10]  # correlations 0.5 to 0.99
    cases.append(("boolean_constant10", boolean, torch.ones(10, dtype=torch.float64)))
    return cases


@pytest.mark.parametrize("name,kernel,f", _small_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_small_n_against_scipy_orthant_probability(name, kernel, f):
    """Tolerance 0.1 nats (P(f) within about 10 %): EP is an approximation whose error grows with the correlation
    between points (Cunningham, Hennig & Lacoste-Julien 2011). Measured on 60 random kernels with n ≤ 10 the error
    was at most 0.03 nats; the strongly correlated Boolean-system kernel (the worst case here) gives 0.07 nats.
    scipy's own error is below 0.002 nats at these settings."""
    exact = _exact_log_prob(kernel, f)
    for schedule in ("parallel", "sequential") if name.startswith("boolean") else ("parallel",):
        result = ep_log_prob(kernel, f, schedule=schedule, tol=1e-9)
        assert result.converged
        assert result.log_prob == pytest.approx(exact, abs=0.1), schedule


def test_parallel_and_sequential_reach_the_same_fixed_point():
    x = torch.tensor(np.random.default_rng(1).normal(size=(40, 6)))
    k = relu_nngp_kernel(x, 2, 1.0, 0.1)
    f = _prior_signs(k, 3)
    f[:4] *= -1  # a few points against the prior's grain
    a = ep_log_prob(k, f, tol=1e-10, max_iter=300)
    b = ep_log_prob(k, f, tol=1e-10, max_iter=300, schedule="sequential", damping=0.0)
    assert a.converged and b.converged
    assert a.log_prob == pytest.approx(b.log_prob, abs=1e-6)
    assert torch.allclose(a.mean, b.mean, atol=1e-5)


def test_hundreds_of_points_against_importance_sampling():
    """EP against the unbiased GHK importance-sampling estimate with the EP posterior as proposal (n = 150).

    Tolerance 3 % of |log P| plus 4 delta-method standard errors: the IS weights are heavy-tailed in hundreds of
    dimensions, so log of their mean sits slightly low (Jensen); over 6 kernels with n = 200 and 20,000 draws the
    gap EP − IS was 0.0 to 1.4 % of |log P|. An error in EP's log Z (a missing log-determinant or site term) moves
    log P by tens of nats and fails this test."""
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.normal(size=(120, 20)))
    k = relu_nngp_kernel(x, 2, 1.0, 0.1)
    f = _prior_signs(k, 4)
    flip = torch.tensor(rng.random(120) < 0.1)
    f[flip] *= -1  # include points the prior finds surprising, as an attack set does
    ep = ep_log_prob(k, f)
    is_log_p, se = importance_log_prob(k, f, ep, n_samples=4000, seed=1, jitter=1e-10)
    assert ep.converged
    assert abs(ep.log_prob - is_log_p) <= 0.03 * abs(is_log_p) + 4 * se, (ep.log_prob, is_log_p, se)


def test_importance_sampling_is_exact_in_small_cases():
    """The IS estimator itself against scipy (n = 6): unbiased, so within 4 standard errors plus scipy's error."""
    rng = np.random.default_rng(2)
    k = relu_nngp_kernel(torch.tensor(rng.normal(size=(6, 4))), 1, 1.0, 0.1)
    f = _prior_signs(k, 0)
    log_p, se = importance_log_prob(k, f, ep_log_prob(k, f), n_samples=20000, seed=0)
    assert abs(log_p - _exact_log_prob(k, f)) <= 4 * se + 2e-3


def test_singular_kernel_gives_a_finite_answer():
    """Duplicated inputs make K singular; EP never inverts K, so it still converges to a finite log P."""
    x = torch.tensor(np.random.default_rng(0).normal(size=(6, 3)))
    k = relu_nngp_kernel(torch.cat([x, x[:2]]), 1, 1.0, 0.1)
    f = _prior_signs(relu_nngp_kernel(x, 1, 1.0, 0.1), 0)
    result = ep_log_prob(k, torch.cat([f, f[:2]]))
    assert result.converged and math.isfinite(result.log_prob)


@pytest.mark.parametrize("z", [-8.0, -2.0, 0.0, 1.5, 6.0])
def test_tilted_moments_against_scipy_truncnorm(z):
    log_cdf, mean, var = tilted_moments(torch.tensor([z], dtype=torch.float64))
    dist = scipy.stats.truncnorm(-z, np.inf)
    assert log_cdf.item() == pytest.approx(scipy.stats.norm.logcdf(z), rel=1e-12)
    assert mean.item() == pytest.approx(dist.mean(), rel=1e-9)
    assert var.item() == pytest.approx(dist.var(), rel=1e-8)


@pytest.mark.parametrize("z", [-25.0, -31.0, -60.0, -1e3, -1e5])
def test_tilted_moments_far_tail_against_high_precision(z):
    """Where 1 − λ(λ + z) cancels catastrophically, the series branch keeps 1e-9 relative accuracy (60 digits truth)."""
    mpmath.mp.dps = 60
    zz = mpmath.mpf(z)
    lam = mpmath.npdf(zz) / mpmath.ncdf(zz)
    exact_var = float(1 - lam * (lam + zz))
    log_cdf, mean, var = tilted_moments(torch.tensor([z], dtype=torch.float64))
    assert mean.item() == pytest.approx(float(lam), rel=1e-10)
    assert var.item() == pytest.approx(exact_var, rel=1e-9)
    assert log_cdf.item() == pytest.approx(float(mpmath.log(mpmath.ncdf(zz))), rel=1e-12)


def test_bad_inputs_name_the_problem():
    k = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="only -1 and \\+1"):
        ep_log_prob(k, torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="one label per kernel row"):
        ep_log_prob(k, torch.ones(2))
    with pytest.raises(ValueError, match="damping"):
        ep_log_prob(k, torch.ones(3), damping=1.0)
    with pytest.raises(ValueError, match="schedule"):
        ep_log_prob(k, torch.ones(3), schedule="async")
