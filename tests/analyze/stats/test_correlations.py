"""Correlations and the rank table against scipy.stats on the same (finished, complete) runs."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from analyze.stats import StatsError, correlations, rank_measures
from analyze.stats import ranking as ranking_module


def _ledger(n: int = 60, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    gap = rng.normal(0.1, 0.03, n)
    sharp = gap * 5 + rng.normal(0, 0.1, n)
    margin = -gap + rng.normal(0, 0.05, n)
    sharp[[3, 7]] = np.nan  # missing measure values
    return pl.DataFrame({
        "run_id": [f"r{i}" for i in range(n)],
        "status": ["FINISHED"] * (n - 4) + ["FAILED"] * 4,
        "hp.lr": rng.choice([0.01, 0.1], n),
        "measure.sharp": sharp,
        "measure.margin": np.round(margin, 2),  # rounding makes ties
        "gen.gap_acc": gap,
        "gen.test_acc": 0.9 - gap,
    })


def test_every_coefficient_and_p_value_equals_scipy() -> None:
    ledger = _ledger()
    out = correlations(ledger)
    done = ledger.filter(pl.col("status") == "FINISHED")
    for row in out.iter_rows(named=True):
        sub = done.select(row["measure"], row["target"]).drop_nans().drop_nulls()
        a, b = sub[row["measure"]].to_numpy(), sub[row["target"]].to_numpy()
        assert row["n"] == a.size
        assert row["n_missing"] == done.height - a.size
        # the module calls scipy itself; equality up to rounding (1e-12) guards the data plumbing
        for m, fn, col in (("pearson", stats.pearsonr, "pearson_r"), ("spearman", stats.spearmanr, "spearman_rho"),
                           ("kendall", stats.kendalltau, "kendall_tau")):
            ref = fn(a, b)
            assert row[col] == pytest.approx(ref.statistic, abs=1e-12)
            assert row[f"{m}_p"] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
            assert row[f"{m}_ci_low"] is None  # no bootstrap asked for
    assert out.filter(pl.col("measure") == "measure.sharp")["n"].to_list() == [54, 54]  # 56 finished − 2 missing


def test_failed_runs_never_enter() -> None:
    ledger = _ledger()
    poisoned = ledger.with_columns(
        pl.when(pl.col("status") == "FAILED").then(1e9).otherwise(pl.col("measure.margin")).alias("measure.margin")
    )
    a = correlations(ledger, targets="gen.gap_acc")
    b = correlations(poisoned, targets="gen.gap_acc")
    assert a.equals(b)


def test_bootstrap_intervals_are_seeded_and_cover_the_estimate() -> None:
    ledger = _ledger()
    a = correlations(ledger, targets=["gen.gap_acc"], resamples=300, seed=4)
    b = correlations(ledger, targets=["gen.gap_acc"], resamples=300, seed=4)
    assert a.equals(b)
    for row in a.iter_rows(named=True):
        for m, col in (("pearson", "pearson_r"), ("spearman", "spearman_rho"), ("kendall", "kendall_tau")):
            assert row[f"{m}_ci_low"] <= row[col] <= row[f"{m}_ci_high"]


def test_constant_and_too_short_columns_are_explained() -> None:
    ledger = _ledger().with_columns(pl.lit(1.0).alias("measure.const"))
    out = correlations(ledger, targets=["gen.gap_acc"])
    row = out.filter(pl.col("measure") == "measure.const").row(0, named=True)
    assert row["kendall_tau"] is None and "constant" in row["note"]
    short = _ledger().head(2)
    note = correlations(short, targets=["gen.gap_acc"])["note"][0]
    assert "at least 3" in note


def test_unknown_target_and_no_measures_are_clear_errors() -> None:
    with pytest.raises(StatsError, match="gen.nope"):
        correlations(_ledger(), targets=["gen.nope"])
    with pytest.raises(StatsError, match="no numeric measure"):
        correlations(_ledger().drop("measure.sharp", "measure.margin"))


def test_rank_sorted_by_abs_tau_with_shared_ranks_and_reversals(monkeypatch: pytest.MonkeyPatch) -> None:
    # sharp is expected to go with a larger gap (+1); margin is expected to go with a smaller gap (-1) but we
    # pretend the literature expects +1 for it, so its negative τ must be marked reversed.
    monkeypatch.setattr(ranking_module, "expected_sign", lambda m, t, better=None: {"measure.sharp": 1, "measure.margin": 1}.get(m, 0))
    ledger = _ledger().with_columns((-pl.col("measure.sharp")).alias("measure.mirror"), pl.lit(0.0).alias("measure.flat"))
    out = rank_measures(ledger, target="gen.gap_acc")
    taus = out["kendall_tau"].to_list()
    defined = [abs(t) for t in taus if t is not None]
    assert defined == sorted(defined, reverse=True)
    assert taus[-1] is None and out["direction"][-1] == "undefined"  # constant measure last
    ranks = dict(zip(out["measure"], out["rank"]))
    assert ranks["measure.sharp"] == ranks["measure.mirror"]  # |τ| tie shares a rank
    d = dict(zip(out["measure"], out["direction"]))
    assert d["measure.sharp"] == "as expected" and d["measure.margin"] == "reversed" and d["measure.mirror"] == "unknown"
    rev = out.filter(pl.col("measure") == "measure.margin").row(0, named=True)
    assert rev["reversed"] and rev["reversal_significant"]
