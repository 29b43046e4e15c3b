"""Direct sampling of P(f) over random FCNs: against a closed form, and EP against it on the n = 7 Boolean system."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from collect.boolean import boolean_inputs
from collect.nngp.ep import ep_log_prob
from collect.nngp.kernels import relu_nngp_kernel
from collect.nngp.sampling import FunctionCounts, pack_signs, sample_fcn_functions


def test_pack_and_unpack_round_trip():
    rng = np.random.default_rng(0)
    for n in (5, 63, 64, 128):
        f = rng.choice([-1, 1], size=(7, n))
        keys = pack_signs(torch.tensor(f > 0)).numpy()
        counts = FunctionCounts(keys=keys, counts=np.ones(7, dtype=np.int64), n_samples=7, n_points=n)
        assert (counts.functions() == f).all()


def test_linear_network_frequencies_match_sheppards_formula():
    """Depth 0 is exactly Gaussian: P(z1 > 0, z2 > 0) = 1/4 + arcsin(ρ)/(2π) with ρ from σ_b² + σ_w² x·x'/d."""
    x = torch.tensor([[1.0, 0.5, -0.2], [0.8, -0.3, 0.4]])
    n = 40_000
    counts = sample_fcn_functions(x, n, depth=0, sigma_w=1.2, sigma_b=0.3, seed=1)
    k = relu_nngp_kernel(x, 0, 1.2, 0.3)
    rho = float(k[0, 1] / torch.sqrt(k[0, 0] * k[1, 1]))
    assert counts.counts.sum() == n
    for f, sign in (([1, 1], 1), ([-1, -1], 1), ([1, -1], -1), ([-1, 1], -1)):
        p = 0.25 + sign * math.asin(rho) / (2 * math.pi)
        log_p, se = counts.log_prob(np.array(f))
        assert abs(log_p - math.log(p)) <= 4 * se  # 4 binomial standard errors of log p̂


def test_unseen_function_has_zero_estimated_probability():
    counts = sample_fcn_functions(torch.tensor([[1.0], [2.0]]), 100, depth=0, sigma_b=0.0)
    # with no bias both outputs share the sign of the single weight: mixed signs never occur
    assert counts.log_prob(np.array([1, -1])) == (-math.inf, math.inf)


def _check_boolean_system(n_samples: int, n_top: int) -> None:
    """Paper 002 section 5.1 system (7 bits as 0/1, FCN 2 x 40 ReLU, σ_w = 1, σ_b = 0.1): EP on the NNGP kernel
    against the sampled frequencies of the most frequent functions (the constant ones, then one-outlier variants).

    Tolerance 0.5 nats plus 3 sampling standard errors. 0.5 is the sum of two measured parts: EP's own bias on
    this very correlated kernel (EP gives −2.88 for the constant function where 2·10^6 exact draws from the GP give
    −2.567 ± 0.003, and −5.94 against −5.60 for a one-outlier function: ≈ 0.35 nats) and the finite-width gap
    between width-40 networks and the NNGP (≈ 0.1 nats, from width 400 against width 40)."""
    x = torch.tensor(boolean_inputs(signed=False))
    counts = sample_fcn_functions(x, n_samples, width=40, depth=2, sigma_w=1.0, sigma_b=0.1, seed=0)
    kernel = relu_nngp_kernel(x, 2, 1.0, 0.1)
    top = counts.functions(n_top)
    assert {int((f > 0).sum()) for f in top[:2]} == {0, 128}  # the two constant functions are the most frequent
    for f in top:
        log_p, se = counts.log_prob(f)
        ep = ep_log_prob(kernel, torch.tensor(f, dtype=torch.float64))
        assert ep.converged
        assert abs(ep.log_prob - log_p) <= 0.5 + 3 * se, (ep.log_prob, log_p, se)


def test_ep_agrees_with_direct_sampling_on_the_boolean_system_constant_functions():
    _check_boolean_system(n_samples=10_000, n_top=2)


@pytest.mark.slow
def test_ep_agrees_with_direct_sampling_on_the_boolean_system_top_functions():
    _check_boolean_system(n_samples=400_000, n_top=8)
