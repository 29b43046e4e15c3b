"""The sort-based pair counters against brute-force enumeration of every pair (exact integers: no tolerance)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analyze.stats._pairs import (
    DiscordanceCounter,
    pair_counts,
    quadrant_counts,
    smaller_before,
    tau_b_from_counts,
    weighted_smaller_before,
)


def _brute_quadrants(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    n = x.size
    out = np.zeros((n, 3, 3), dtype=np.int64)
    for i in range(n):
        for j in range(n):
            if i != j:
                out[i, int(np.sign(x[j] - x[i])) + 1, int(np.sign(y[j] - y[i])) + 1] += 1
    return out


@pytest.mark.parametrize("n", [1, 2, 5, 33, 120])
def test_quadrant_counts_match_enumeration_with_ties(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.integers(0, 5, n).astype(float)  # few values: many ties in x, in y and in both
    y = rng.integers(0, 4, n).astype(float)
    assert np.array_equal(quadrant_counts(x, y), _brute_quadrants(x, y))


def test_smaller_before_and_weighted_version() -> None:
    rng = np.random.default_rng(0)
    v = rng.integers(0, 7, 50)
    w = rng.integers(0, 4, (3, 50))
    brute = np.array([sum(1 for j in range(i) if v[j] < v[i]) for i in range(50)])
    assert np.array_equal(smaller_before(v), brute)
    brute_g = np.array([sum(1 for j in range(i) if v[j] > v[i]) for i in range(50)])
    assert np.array_equal(smaller_before(v, greater=True), brute_g)
    wb = np.array([[sum(w[b, j] for j in range(i) if v[j] < v[i]) for i in range(50)] for b in range(3)])
    assert np.array_equal(weighted_smaller_before(v, w), wb)


def test_tau_b_from_counts_equals_scipy() -> None:
    rng = np.random.default_rng(1)
    for n in (3, 10, 200):
        x = rng.integers(0, 6, n).astype(float)
        y = x + rng.integers(0, 3, n)
        n0, c, d, tx, ty = pair_counts(x, y)
        # both are exact rational arithmetic in float64: agreement to 1e-12 is rounding only
        assert tau_b_from_counts(n0, c - d, tx, ty) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


def test_discordance_counter_on_resamples_equals_resampled_counts() -> None:
    rng = np.random.default_rng(2)
    n = 80
    x = rng.integers(0, 10, n).astype(float)
    y = rng.integers(0, 10, n).astype(float)
    idx = rng.integers(0, n, (6, n))
    counts = np.stack([np.bincount(i, minlength=n) for i in idx])
    got = DiscordanceCounter(x, y).discordant(counts.T)
    for b in range(6):
        assert got[b] == pair_counts(x[idx[b]], y[idx[b]])[2]
