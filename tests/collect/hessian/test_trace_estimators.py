"""Hutchinson, Hutch++ and the Frobenius estimator: agreement with the dense Hessian, the stopping rule, and
coverage of the reported standard error over repeated seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from collect.hessian.operator import ChunkedLoss
from collect.hessian.trace import hutchinson_frobenius, hutchinson_trace, hutchpp_trace, sequential_mean
from collect.losses import cross_entropy
from tests.collect.hessian.tiny_nets import (  # noqa: F401 (single_thread is an autouse fixture)
    F64,
    NETS,
    cached_hessian,
    cpu_generator,
    single_thread,
    vector_data,
)

BUDGET = dict(rel_se=0.05, max_probes=2000, block=32)


@pytest.mark.parametrize("net", sorted(NETS))
def test_trace_and_frobenius_on_tiny_networks(net):
    """Estimates through the real HVP operator agree with the dense Hessian within 4 standard errors.

    4 SE: for a (near-)normal mean a 4-sigma miss has probability 6e-5; the seed is fixed, so the test is
    deterministic, and a biased estimator (e.g. a wrong chunk weight, or Gaussian/Rademacher mix-ups in the
    Frobenius estimator) moves the value by many SEs. At random initialisation the Hessian has much off-diagonal
    mass, so a 5 % relative standard error already takes a few hundred probes.
    """
    x, y = vector_data()
    model = NETS[net]()
    hess = cached_hessian(net)
    loss = ChunkedLoss(model, cross_entropy, x, y)  # one chunk: chunking is tested in test_hessian_operator
    true_trace = float(torch.trace(hess))
    true_frob = float(torch.linalg.norm(hess))
    for estimator in (hutchinson_trace, hutchpp_trace):
        est = estimator(loss.hvp_batch, loss.dim, generator=cpu_generator(3), **BUDGET, **F64)
        assert est.converged and est.std_error <= 0.05 * abs(est.value)
        assert abs(est.value - true_trace) <= 4 * est.std_error
    frob = hutchinson_frobenius(loss.hvp_batch, loss.dim, generator=cpu_generator(4), **BUDGET, **F64)
    assert frob.converged
    assert abs(frob.value - true_frob) <= 4 * frob.std_error


def test_hutchpp_with_full_rank_sketch_is_exact():
    hess = cached_hessian("relu")
    est = hutchpp_trace(lambda v: v @ hess, hess.shape[0], generator=cpu_generator(0), rank=hess.shape[0], **F64)
    assert est.value == pytest.approx(float(torch.trace(hess)), rel=1e-10)
    assert est.std_error == 0.0 and est.n_matvecs == 2 * hess.shape[0]


def test_stopping_rule_is_a_relative_standard_error():
    """The run stops at the first block where se ≤ rel_se·|mean|, not on a change-of-mean rule."""
    rng = np.random.default_rng(0)
    stream = rng.normal(10.0, 2.0, size=10_000)
    pos = [0]

    def draw(k: int) -> np.ndarray:
        out = stream[pos[0] : pos[0] + k]
        pos[0] += k
        return out

    mean, se, n, ok = sequential_mean(draw, rel_se=0.01, min_probes=10, max_probes=5000, block=4)
    assert ok and se <= 0.01 * abs(mean)
    prev = stream[: n - 4]  # one block earlier the rule was not yet met
    assert prev.std(ddof=1) / math.sqrt(prev.size) > 0.01 * abs(prev.mean())
    assert se == pytest.approx(stream[:n].std(ddof=1) / math.sqrt(n))
    pos[0] = 0
    mean, se, n, ok = sequential_mean(draw, rel_se=1e-6, min_probes=10, max_probes=40, block=8)
    assert not ok and n == 40
    with pytest.raises(ValueError, match="min_probes"):
        sequential_mean(draw, rel_se=0.1, min_probes=1, max_probes=40, block=8)


@pytest.mark.parametrize("estimator", [hutchinson_trace, hutchpp_trace])
@pytest.mark.parametrize("adaptive", [False, True], ids=["fixed50", "rel_se10pct"])
def test_standard_error_covers_the_true_trace_at_the_nominal_rate(estimator, adaptive):
    """Over 400 seeds, Tr H lies within ±1 SE about 68 % of the time and within ±1.96 SE about 95 %.

    Bounds: binomial sd at n = 400 is 0.023 (p = 0.683) and 0.011 (p = 0.95); the intervals below allow 3.5-4.5 sd
    below nominal — a 50-probe t-correction and skew of the quadratic-form samples cost about 1 point — and
    fail both an SE that is too small (coverage collapses) and one too large, e.g. the sample sd without the
    1/sqrt(n) (coverage near 100 %). The adaptive rule stops on the SE it estimates (optional stopping); measured
    over 1,000 seeds it keeps nominal coverage here: 0.69/0.94 (Hutchinson, ~144 products) and 0.68/0.94 (Hutch++,
    ~83 products) at rel_se = 10 %; 0.70/0.95 and 0.69/0.95 with 50 fixed probes.
    """
    hess = cached_hessian("relu")
    true_trace = float(torch.trace(hess))
    if adaptive:
        budget = dict(rel_se=0.1, min_probes=20, max_probes=2000)
    else:
        budget = dict(rel_se=0.0, min_probes=50, max_probes=50)
    hits1 = hits2 = 0
    reps = 400
    for seed in range(reps):
        est = estimator(lambda v: v @ hess, hess.shape[0], generator=cpu_generator(seed), **budget, **F64)
        err = abs(est.value - true_trace)
        hits1 += err <= est.std_error
        hits2 += err <= 1.96 * est.std_error
    assert 0.60 <= hits1 / reps <= 0.77
    assert 0.90 <= hits2 / reps <= 0.99
