"""NNGP kernels against Monte Carlo over wide random ReLU networks and against high-precision arithmetic."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from torch import nn

from collect.config import ModelConfig
from collect.nngp.kernels import (
    default_mc_samples,
    empirical_kernel,
    penultimate_features,
    random_init_features,
    relu_nngp_kernel,
)


def _random_relu_kernel_estimates(x: torch.Tensor, depth: int, width: int, n_nets: int, sigma_w: float, sigma_b: float, seed: int) -> torch.Tensor:
    """Per-network estimates σ_w²/n Σ_c h_c(x) h_c(x') + σ_b² of the output kernel, from hand-rolled random nets."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_nets):
        h = x.double()
        for _ in range(depth):
            w = torch.randn(h.shape[1], width, generator=g, dtype=torch.float64) * sigma_w / math.sqrt(h.shape[1])
            b = torch.randn(width, generator=g, dtype=torch.float64) * sigma_b
            h = torch.relu(h @ w + b)
        out.append(sigma_w**2 * (h @ h.T) / h.shape[1] + sigma_b**2)
    return torch.stack(out)


@pytest.mark.parametrize("depth", [1, 3])
def test_arccos_kernel_matches_wide_random_relu_networks(depth):
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x[5] = -x[0]  # an antiparallel pair (θ = π) and a duplicate direction at another scale (θ = 0)
    x[4] = 3.0 * x[1]
    sigma_w, sigma_b = 1.3, 0.2
    width = 800
    est = _random_relu_kernel_estimates(x, depth, width=width, n_nets=16, sigma_w=sigma_w, sigma_b=sigma_b, seed=2)
    mean, se = est.mean(0), est.std(0) / math.sqrt(est.shape[0])
    exact = relu_nngp_kernel(x, depth, sigma_w, sigma_b)
    # Tolerance: 4 standard errors of the Monte-Carlo mean (over independent networks) plus the O(1/width)
    # finite-width bias of the deeper layers, bounded generously by 5/width relative to the entry.
    tol = 4 * se + 5.0 / width * exact.abs()
    assert torch.all((mean - exact).abs() <= tol), ((mean - exact).abs() / tol).max()


def test_arccos_depth_zero_is_the_linear_kernel():
    x = torch.randn(4, 3, dtype=torch.float64)
    expected = 0.3**2 + 2.0**2 * (x @ x.T) / 3
    assert torch.allclose(relu_nngp_kernel(x, 0, 2.0, 0.3), expected, rtol=1e-14, atol=0)


def _mp_kernel(a: np.ndarray, b: np.ndarray, depth: int, sw: float, sb: float) -> float:
    """The recursion in 60-digit arithmetic for the pair (a, b)."""
    mpmath.mp.dps = 60
    a = [mpmath.mpf(float(v)) for v in a]
    b = [mpmath.mpf(float(v)) for v in b]
    d = len(a)
    kaa = sb**2 + sw**2 * mpmath.fsum(u * u for u in a) / d
    kbb = sb**2 + sw**2 * mpmath.fsum(u * u for u in b) / d
    kab = sb**2 + sw**2 * mpmath.fsum(u * v for u, v in zip(a, b)) / d
    for _ in range(depth):
        rho = kab / mpmath.sqrt(kaa * kbb)
        theta = mpmath.acos(rho)
        kab = sb**2 + sw**2 / (2 * mpmath.pi) * mpmath.sqrt(kaa * kbb) * (mpmath.sin(theta) + (mpmath.pi - theta) * rho)
        kaa, kbb = sb**2 + sw**2 * kaa / 2, sb**2 + sw**2 * kbb / 2
    return float(kab)


@pytest.mark.parametrize("eps", [0.0, 1e-12, 1e-8, 1e-4])
def test_arccos_kernel_is_accurate_near_theta_zero(eps):
    rng = np.random.default_rng(0)
    a = rng.normal(size=10)
    b = a + eps * rng.normal(size=10)
    k = relu_nngp_kernel(torch.tensor(np.stack([a, b])), 3, 1.0, 0.1)
    assert torch.isfinite(k).all()
    # Relative error 1e-12: dJ/dρ = π − θ is bounded, so float64 rounding in ρ (≈1e-16) cannot grow past ~1e-14.
    assert k[0, 1].item() == pytest.approx(_mp_kernel(a, b, 3, 1.0, 0.1), rel=1e-12)
    assert k[0, 0].item() == pytest.approx(_mp_kernel(a, a, 3, 1.0, 0.1), rel=1e-12)
    assert torch.linalg.eigvalsh(k).min() > -1e-14 * k.diagonal().max()


def test_empirical_kernel_of_build_model_fcn_agrees_with_arccos():
    """Eq. (6) over collect.models FCNs with the NNGP initialisation converges to the arc-cosine kernel."""
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    cfg = ModelConfig(arch="fcn", width=1000, depth=2)
    feats = list(random_init_features(cfg, (4,), 2, x, n_samples=12, sigma_w=1.0, sigma_b=0.1, seed=0))
    per_net = torch.stack([empirical_kernel([h], 1.0, 0.1) for h in feats])
    mean, se = per_net.mean(0), per_net.std(0) / math.sqrt(len(feats))
    assert torch.allclose(empirical_kernel(feats, 1.0, 0.1), mean, rtol=1e-12)
    exact = relu_nngp_kernel(x, 2, 1.0, 0.1)
    # Same tolerance logic as above: 4 Monte-Carlo standard errors plus a 5/width finite-width allowance.
    assert torch.all((mean - exact).abs() <= 4 * se + 5.0 / 1000 * exact.abs())


def test_penultimate_features_are_the_last_linear_layer_inputs():
    model = nn.Sequential(nn.Linear(3, 7), nn.ReLU(), nn.Linear(7, 2))
    x = torch.randn(10, 3)
    expected = torch.relu(model[0](x)).detach()
    assert torch.allclose(penultimate_features(model, x, batch_size=4), expected)


def test_random_init_features_batch_norm_uses_batch_statistics():
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0)) * 5 + 3
    cfg = ModelConfig(arch="fcn", width=8, depth=1, batch_norm=True)
    (h,) = random_init_features(cfg, (4,), 2, x, n_samples=1, sigma_w=1.0, sigma_b=0.1, seed=0)
    # Linear → BN (batch statistics) → ReLU: pre-ReLU features are standardised over the batch, so the ReLU
    # outputs cannot all be zero or all positive in a column, whereas eval-mode BN (identity at init) could.
    assert ((h > 0).any(0) & (h == 0).any(0)).all()


def test_empirical_kernel_errors_and_default_m():
    with pytest.raises(ValueError, match="at least one"):
        empirical_kernel([], 1.0, 0.1)
    with pytest.raises(ValueError, match="widths differ"):
        empirical_kernel([torch.ones(2, 3), torch.ones(2, 4)], 1.0, 0.1)
    assert default_mc_samples(1500) == 150 and default_mc_samples(3) == 1
