"""A measure whose values sit at float64's maximum (an infinite sharpness as MLflow stores it): the rank
correlations and their intervals are computed, Pearson r is undefined and says so instead of failing."""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.stats
import warnings

from analyze.stats.correlations import correlations


def test_values_near_float64_max_give_rank_statistics_and_a_note_for_pearson():
    rng = np.random.default_rng(0)
    gap = rng.normal(size=40)
    measure = gap + rng.normal(scale=0.5, size=40)
    measure[gap > 1.0] = np.finfo(np.float64).max  # the sharpest runs: α' = 0, stored as the largest float
    ledger = pl.DataFrame({"status": ["FINISHED"] * 40, "measure.m": measure, "gen.gap_acc": gap})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the moments overflow: that is the case under test
        row = correlations(ledger, targets="gen.gap_acc", resamples=200).row(0, named=True)
    assert row["kendall_tau"] == scipy.stats.kendalltau(measure, gap).statistic
    assert row["kendall_ci_low"] < row["kendall_tau"] < row["kendall_ci_high"]
    assert row["pearson_r"] is None and row["pearson_ci_low"] is None
    assert "pearson interval undefined" in row["note"]
