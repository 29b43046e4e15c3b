"""Sign-error over environments on hand-built ledgers, and the Hoeffding weight formula."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from analyze.stats import StatsError, hoeffding_weight, sign_error, sign_error_environments


def test_hoeffding_weight_values() -> None:
    # Δ = 0.03, n = 10,000: P = 1 − 2·exp(−10000·0.03²/2) = 1 − 2e^{−4.5}; weight = P² − 0.5
    assert hoeffding_weight(np.array([0.03]), 10_000)[0] == pytest.approx((1 - 2 * math.exp(-4.5)) ** 2 - 0.5, rel=1e-12)
    assert hoeffding_weight(np.array([0.01]), 10_000)[0] == 0.0  # within noise: 1 − 2e^{−0.5} < 0
    assert hoeffding_weight(np.array([0.2]), 10_000)[0] == pytest.approx(0.5, abs=1e-12)


def _ledger(rows: list[tuple[str, str, float, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"hp.lr": [r[0] for r in rows], "hp.bs": [r[1] for r in rows], "gen.gap_acc": [r[2] for r in rows],
         "measure.m": [r[3] for r in rows], "hp.n_test": [10_000] * len(rows)}
    )


def test_worked_example_one_environment() -> None:
    # lr=a runs: (gap 0.1, m 1), (0.2, 2); lr=b runs: (0.3, 3), (0.4, 0). The four cross pairs:
    # (0.1,1)-(0.3,3): same order → 0; (0.1,1)-(0.4,0): reversed → 1; (0.2,2)-(0.3,3) → 0; (0.2,2)-(0.4,0) → 1.
    # Every |Δgap| ≥ 0.1 so every weight is 0.5 (exp term < e^-50): error 0.5, ESS = 4.
    ledger = _ledger([("a", "x", 0.1, 1.0), ("a", "x", 0.2, 2.0), ("b", "x", 0.3, 3.0), ("b", "x", 0.4, 0.0)])
    out = sign_error(ledger, min_ess=4)
    row = out.filter(pl.col("axis") == "hp.lr").row(0, named=True)
    assert (row["mean"], row["max"], row["n_envs"], row["n_envs_kept"], row["n_pairs"]) == (0.5, 0.5, 1, 1, 4)
    assert sign_error_environments(ledger, min_ess=4)["ess"][0] == pytest.approx(4.0)
    dropped = sign_error(ledger, min_ess=5).filter(pl.col("axis") == "hp.lr").row(0, named=True)
    assert dropped["mean"] is None and "effective sample size" in dropped["note"]


def test_worked_example_three_environments_ties_and_percentile() -> None:
    # one run per configuration, lr ∈ {a, b, c}; no ESS filter (min_ess 1), uniform weights.
    # (a,b): gaps 0.1→0.2, m 1→2: 0. (a,c): 0.1→0.3, m 1→1: tie → 0.5. (b,c): 0.2→0.3, m 2→1: 1.
    ledger = _ledger([("a", "x", 0.1, 1.0), ("b", "x", 0.2, 2.0), ("c", "x", 0.3, 1.0)])
    row = sign_error(ledger, min_ess=1, hoeffding=False).filter(pl.col("axis") == "hp.lr").row(0, named=True)
    assert row["mean"] == pytest.approx(0.5)
    assert row["p90"] == pytest.approx(0.5 + 0.8 * 0.5)  # sorted [0, .5, 1]: position 0.9·2 = 1.8
    assert row["max"] == 1.0 and row["weighting"] == "uniform"


def test_pairs_differing_in_two_axes_are_not_environments() -> None:
    # four configurations, each pair differing in two of three columns, no two columns aliased
    ledger = pl.DataFrame({"hp.x": [0, 1, 1, 0], "hp.y": [0, 1, 0, 1], "hp.z": [0, 0, 1, 1], "gen.gap_acc": [0.1, 0.2, 0.3, 0.4],
                           "measure.m": [1.0, 2.0, 3.0, 4.0], "hp.n_test": [10_000] * 4})
    out = sign_error(ledger, min_ess=1)
    assert out["n_envs"].to_list() == [0, 0, 0, 0]
    assert "differ only" in out["note"][0]


def test_two_aliased_columns_are_one_intervention() -> None:
    out = sign_error(_ledger([("a", "x", 0.1, 1.0), ("b", "y", 0.2, 2.0)]), min_ess=1)
    assert out["axis"].to_list() == ["hp.lr+hp.bs", "ALL"] and out["n_envs"][0] == 1
    assert "fewer than 10" in out["note"][0]


def test_missing_test_size_and_percent_accuracies_are_clear_errors() -> None:
    ledger = _ledger([("a", "x", 0.1, 1.0), ("b", "x", 0.2, 2.0)]).drop("hp.n_test")
    with pytest.raises(StatsError, match="--n-test"):
        sign_error(ledger)
    assert sign_error(ledger, n_test=1000, min_ess=1)["n_envs_kept"][0] == 1
    with pytest.raises(StatsError, match="fractions"):
        sign_error(ledger.with_columns(pl.col("gen.gap_acc") * 100), n_test=1000)
