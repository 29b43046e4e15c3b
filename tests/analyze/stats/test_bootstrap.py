"""The vectorised BCa bootstrap against scipy.stats.bootstrap on the same resamples, and the closed-form
jackknife against recomputing each coefficient with one run left out."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analyze.stats.bootstrap import METHODS, bca_interval, correlation_replicates, resample_counts

SCIPY = {
    "pearson": lambda a, b: stats.pearsonr(a, b).statistic,
    "spearman": lambda a, b: stats.spearmanr(a, b).statistic,
    "kendall": lambda a, b: stats.kendalltau(a, b).statistic,
}


def _data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 8, n).astype(float)  # ties, as quantised accuracies have
    y = x + rng.integers(0, 6, n)
    return np.column_stack([x, y])


@pytest.mark.parametrize("method", METHODS)
def test_bca_interval_equals_scipy_bootstrap(method: str) -> None:
    data = _data(25, 3)
    counts = resample_counts(np.random.default_rng(11), 25, 200)
    rep = correlation_replicates(data, np.array([[0, 1]]), method, counts)
    lo, hi = bca_interval(rep, 0.9)
    ref = stats.bootstrap(
        (data[:, 0], data[:, 1]), SCIPY[method], paired=True, vectorized=False, n_resamples=200,
        method="BCa", confidence_level=0.9, rng=np.random.default_rng(11),
    )
    # same resamples, same formulas: only floating-point rounding separates the two (1e-10)
    assert np.sort(rep.boot[:, 0]) == pytest.approx(np.sort(ref.bootstrap_distribution), abs=1e-10)
    assert lo[0] == pytest.approx(ref.confidence_interval.low, abs=1e-10)
    assert hi[0] == pytest.approx(ref.confidence_interval.high, abs=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_jackknife_equals_leave_one_out(method: str) -> None:
    data = _data(40, 4)
    rep = correlation_replicates(data, np.array([[0, 1], [1, 0]]), method, None)
    loo = np.array([SCIPY[method](np.delete(data[:, 0], i), np.delete(data[:, 1], i)) for i in range(40)])
    assert rep.jack[:, 0] == pytest.approx(loo, abs=1e-12)  # exact formulas: rounding only
    assert rep.estimate[0] == pytest.approx(SCIPY[method](data[:, 0], data[:, 1]), abs=1e-12)
    assert rep.estimate[1] == pytest.approx(rep.estimate[0], abs=1e-12)  # symmetric


def test_degenerate_column_gives_nan_interval() -> None:
    data = np.column_stack([np.ones(20), np.arange(20.0)])
    counts = resample_counts(np.random.default_rng(0), 20, 50)
    for method in METHODS:
        lo, hi = bca_interval(correlation_replicates(data, np.array([[0, 1]]), method, counts))
        assert np.isnan(lo[0]) and np.isnan(hi[0])
