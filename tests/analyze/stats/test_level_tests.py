"""Centred within-level ranks: the one-sort computation against scipy.stats.rankdata level by level."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analyze.stats.level_tests import Side, centred_ranks, stratified_r


def _reference(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(rankdata within the level − (n + 1)/2) / n, one level at a time: the definition."""
    out = np.zeros(values.size)
    for code in np.unique(codes):
        m = codes == code
        n = int(m.sum())
        out[m] = (stats.rankdata(values[m]) - (n + 1) / 2.0) / n
    return out


@pytest.mark.parametrize("seed", range(5))
def test_centred_ranks_equal_rankdata_per_level(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    codes = rng.integers(0, 7, n) * 3 + 1  # sparse, unsorted level ids, one level may be small
    continuous = rng.normal(size=n)
    tied = rng.integers(0, 5, n).astype(float)  # many ties inside every level
    for values in (continuous, tied, np.r_[tied[:-1], -0.0]):
        # exact equality: average ranks are half-integers, so both computations give the same floats
        assert np.array_equal(centred_ranks(values, codes), _reference(values, codes))


def test_centred_ranks_edge_cases() -> None:
    assert centred_ranks(np.zeros(0), np.zeros(0, dtype=int)).size == 0
    one = centred_ranks(np.array([3.0]), np.array([0]))
    assert np.array_equal(one, _reference(np.array([3.0]), np.array([0])))  # a level of one run: 0
    constant = centred_ranks(np.full(6, 2.0), np.array([0, 0, 0, 1, 1, 1]))
    assert np.array_equal(constant, np.zeros(6))
    with_nan = np.array([1.0, np.nan, 3.0, 2.0, 5.0])
    codes = np.array([0, 0, 0, 1, 1])
    assert np.array_equal(centred_ranks(with_nan, codes), _reference(with_nan, codes), equal_nan=True)


def test_side_coefficient_is_stratified_r_and_computed_once() -> None:
    rng = np.random.default_rng(1)
    cx, cy = rng.normal(size=40), rng.normal(size=40)
    side = Side(cx, cy, 2)
    assert side.r() == stratified_r(cx, cy)
    assert side.r() is side.r()  # the cached float, not a recomputation
