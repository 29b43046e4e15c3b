"""Partial correlations against the precision-matrix formula, OLS residuals (statsmodels) and the three-τ formula."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm
from scipy import stats

from analyze.stats import StatsError, partial_correlations, partial_matrix


def _ledger(n: int = 80, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    margin = rng.normal(size=n)
    scale = rng.normal(size=n)
    gap = 0.5 * margin + 0.3 * scale + rng.normal(0, 0.5, n)
    trace = 0.8 * margin + 0.2 * gap + rng.normal(0, 0.5, n)
    return pl.DataFrame({"measure.trace": trace, "measure.margin_mean": margin, "measure.norm": scale,
                         "gen.gap_acc": gap, "gen.train_loss": rng.normal(size=n)})


def _ols_resid(y: np.ndarray, z: np.ndarray) -> np.ndarray:
    return sm.OLS(y, sm.add_constant(z)).fit().resid


def test_pearson_and_spearman_partial_equal_ols_residual_correlation_and_t_test() -> None:
    ledger = _ledger()
    covs = ["measure.margin_mean", "measure.norm"]
    out = partial_correlations(ledger, covariates=covs, targets=["gen.gap_acc"], measures=["measure.trace"])
    row = out.row(0, named=True)
    x, y, z = (ledger[c].to_numpy() for c in ("measure.trace", "gen.gap_acc")), None, ledger.select(covs).to_numpy()
    x, y = ledger["measure.trace"].to_numpy(), ledger["gen.gap_acc"].to_numpy()
    r_resid = stats.pearsonr(_ols_resid(x, z), _ols_resid(y, z)).statistic
    assert row["pearson_r"] == pytest.approx(r_resid, abs=1e-10)  # two exact routes: rounding only
    # the partial correlation's t-test equals the t-test of x's coefficient in OLS of y on (x, Z)
    fit = sm.OLS(y, sm.add_constant(np.column_stack([x, z]))).fit()
    assert row["pearson_p"] == pytest.approx(fit.pvalues[1], rel=1e-8)
    # precision-matrix formula computed independently
    p = np.linalg.inv(np.corrcoef(np.column_stack([x, y, z]), rowvar=False))
    assert row["pearson_r"] == pytest.approx(-p[0, 1] / np.sqrt(p[0, 0] * p[1, 1]), abs=1e-12)
    # Spearman: the same on ranks
    rk = stats.rankdata(np.column_stack([x, y, z]), axis=0)
    r_rank = stats.pearsonr(_ols_resid(rk[:, 0], rk[:, 2:]), _ols_resid(rk[:, 1], rk[:, 2:])).statistic
    assert row["spearman_rho"] == pytest.approx(r_rank, abs=1e-10)
    fit_r = sm.OLS(rk[:, 1], sm.add_constant(np.column_stack([rk[:, 0], rk[:, 2:]]))).fit()
    assert row["spearman_p"] == pytest.approx(fit_r.pvalues[1], rel=1e-8)
    assert row["n"] == 80 and row["covariates"] == "measure.margin_mean,measure.norm"


def test_kendall_partial_equals_three_tau_formula() -> None:
    ledger = _ledger()
    out = partial_correlations(ledger, covariates=["measure.margin_mean"], targets="gen.gap_acc", measures=["measure.trace"])
    x, y, z = (ledger[c].to_numpy() for c in ("measure.trace", "gen.gap_acc", "measure.margin_mean"))
    txy, txz, tyz = (stats.kendalltau(a, b).statistic for a, b in ((x, y), (x, z), (y, z)))
    expected = (txy - txz * tyz) / np.sqrt((1 - txz**2) * (1 - tyz**2))
    row = out.row(0, named=True)
    assert row["kendall_tau"] == pytest.approx(expected, abs=1e-12)
    n = 80
    z_stat = 3 * expected * np.sqrt(n * (n - 1)) / np.sqrt(2 * (2 * n + 5))
    assert row["kendall_p"] == pytest.approx(2 * stats.norm.sf(abs(z_stat)), rel=1e-10)


def test_partial_bootstrap_intervals_cover_estimates() -> None:
    out = partial_correlations(_ledger(), covariates=["measure.margin_mean"], targets=["gen.gap_acc"],
                               measures=["measure.trace"], resamples=200, seed=3)
    row = out.row(0, named=True)
    for m, col in (("pearson", "pearson_r"), ("spearman", "spearman_rho"), ("kendall", "kendall_tau")):
        assert row[f"{m}_ci_low"] < row[col] < row[f"{m}_ci_high"]


def test_matrix_mode_equals_single_partials() -> None:
    ledger = _ledger()
    mat = partial_matrix(ledger, target="gen.gap_acc")
    assert mat.height == 3 * 2
    one = partial_correlations(ledger, covariates=["measure.norm"], targets=["gen.gap_acc"], measures=["measure.trace"])
    row = mat.filter((pl.col("measure") == "measure.trace") & (pl.col("control") == "measure.norm")).row(0, named=True)
    for col in ("pearson_r", "pearson_p", "spearman_rho", "kendall_tau", "kendall_p"):
        assert row[col] == pytest.approx(one[col][0], abs=1e-12)
    # with a missing value the slow per-triple path must agree with dropping that run by hand
    holed = ledger.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("measure.norm")).alias("measure.norm"))
    slow = partial_matrix(holed, target="gen.gap_acc").filter((pl.col("measure") == "measure.trace") & (pl.col("control") == "measure.margin_mean"))
    fast = partial_matrix(holed.drop("measure.norm"), target="gen.gap_acc").filter(pl.col("measure") == "measure.trace")
    assert slow["n"][0] == 80 and slow["kendall_tau"][0] == pytest.approx(fast["kendall_tau"][0], abs=1e-12)


def test_bad_covariates_are_clear_errors() -> None:
    with pytest.raises(StatsError, match="measure.nope"):
        partial_correlations(_ledger(), covariates=["measure.nope"])
    with pytest.raises(StatsError, match="at least one covariate"):
        partial_correlations(_ledger(), covariates=[])
    out = partial_correlations(_ledger().head(4), covariates=["measure.margin_mean", "measure.norm"], targets=["gen.gap_acc"])
    assert "needs at least 6" in out["note"][0]
