"""The normal and t tails and quantiles of ``analyze.stats.tails`` return exactly the floats of scipy.stats."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analyze.stats.tails import normal_quantile, normal_sf, t_quantile, t_sf

# the report's statistics feed these values into p-values and intervals; any difference would change a printed
# number, so equality is exact (==), not approximate
Z = np.r_[np.random.default_rng(0).normal(0.0, 4.0, 2000), 0.0, -0.0, 1e-300, 8.0, 38.0, -38.0, np.inf, -np.inf]


def test_normal_sf_is_scipy_norm_sf_bit_for_bit() -> None:
    for z in Z:
        assert normal_sf(z) == stats.norm.sf(z)
    assert np.array_equal(normal_sf(Z), stats.norm.sf(Z))
    assert np.isnan(normal_sf(np.nan))


@pytest.mark.parametrize("df", [1, 2, 3, 6, 48, 1998, 9998, 2.5])
def test_t_sf_is_scipy_t_sf_bit_for_bit(df: float) -> None:
    for t in np.abs(Z):
        assert t_sf(t, df) == stats.t.sf(t, df)
    assert np.array_equal(t_sf(Z, df), stats.t.sf(Z, df))


@pytest.mark.parametrize("q", [0.5 + 0.95 / 2, 0.975, 0.995, 0.9, 1 - 0.05 / 60 / 2, 1e-9, 0.5])
def test_quantiles_are_scipy_ppf_bit_for_bit(q: float) -> None:
    assert normal_quantile(q) == stats.norm.ppf(q)
    for df in (1, 5, 29, 100, 1999):
        assert t_quantile(q, df) == stats.t.ppf(q, df)


def test_bad_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_sf(1.0, 0)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile(0.5, -1)
    with pytest.raises(ValueError, match="q must lie"):
        normal_quantile(1.5)
