"""Granulated Kendall Ψ on a hand-built ledger whose answer is worked out below."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from analyze.stats import StatsError, granulated_kendall, grouped_tau_b

# (A, B) -> (gap, measure). Axis A cells (B fixed): B=0: gaps 1,2,3 vs measures 10,20,30 → τ = 1;
# B=1: gaps 1.5,2.5,3.5 vs 30,20,25 → pairs (−,−,+) → τ = (1 − 2)/3 = −1/3. ψ_A = (1 − 1/3)/2 = 1/3.
# Axis B cells (A fixed): A=0: (1,10) vs (1.5,30) → τ = 1; A=1: measure 20 vs 20 is constant → undefined;
# A=2: (3,30) vs (3.5,25) → τ = −1. ψ_B = (1 − 1)/2 = 0. Ψ = (1/3 + 0)/2 = 1/6.
CONFIGS = {(0, 0): (1.0, 10.0), (1, 0): (2.0, 20.0), (2, 0): (3.0, 30.0),
           (0, 1): (1.5, 30.0), (1, 1): (2.5, 20.0), (2, 1): (3.5, 25.0)}


def _ledger() -> pl.DataFrame:
    rows = []
    for (a, b), (gap, m) in CONFIGS.items():
        for seed, delta in ((0, 0.01), (1, -0.01)):  # two seeds whose mean is the configuration's value
            rows.append({"status": "FINISHED", "seed": seed, "hp.a": a, "hp.b": b, "hp.const": 7,
                         "measure.m": m + delta * 100, "gen.gap_acc": gap + delta})
    rows.append({"status": "FAILED", "seed": 2, "hp.a": 0, "hp.b": 0, "hp.const": 7, "measure.m": 1e9, "gen.gap_acc": 0.0})
    return pl.DataFrame(rows)


def test_worked_example() -> None:
    out = granulated_kendall(_ledger(), target="gen.gap_acc", min_configs=2)
    psi = dict(zip(out["axis"], out["psi"]))
    assert psi["hp.a"] == pytest.approx(1 / 3, abs=1e-12)
    assert psi["hp.b"] == pytest.approx(0.0, abs=1e-12)
    assert psi["ALL"] == pytest.approx(1 / 6, abs=1e-12)
    cells = dict(zip(out["axis"], out["n_cells"]))
    undefined = dict(zip(out["axis"], out["n_cells_undefined"]))
    assert (cells["hp.a"], cells["hp.b"], undefined["hp.b"]) == (2, 2, 1)
    assert "hp.const" not in psi  # a constant hp column is not an axis


def test_cells_of_two_configurations_give_no_psi_by_default() -> None:
    # axis B's cells hold 2 configurations each (τ would be ±1 from 2 points): refused at the default of 3
    out = granulated_kendall(_ledger(), target="gen.gap_acc")
    row = out.filter(pl.col("axis") == "hp.b").row(0, named=True)
    assert row["psi"] is None and row["n_cells"] == 0 and row["n_cells_small"] == 3
    assert "not enough runs" in row["note"] and "--min-configs" in row["note"]
    a = out.filter(pl.col("axis") == "hp.a").row(0, named=True)  # cells of 3 configurations are kept
    assert a["psi"] == pytest.approx(1 / 3, abs=1e-12) and a["n_cells_small"] == 0
    assert out.filter(pl.col("axis") == "ALL")["psi"][0] == pytest.approx(1 / 3, abs=1e-12)


def test_grouped_tau_matches_scipy_per_group() -> None:
    from scipy import stats

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 30, 500)
    codes[:450] = codes[:450] % 5  # a few groups larger than the enumeration limit? no: 5 groups of ~90 plus small ones
    x = rng.integers(0, 6, 500).astype(float)
    y = rng.normal(size=500)
    tau, sizes = grouped_tau_b(codes, x, y)
    for g in np.flatnonzero(sizes >= 2):
        m = codes == g
        ref = stats.kendalltau(x[m], y[m]).statistic
        assert (np.isnan(ref) and np.isnan(tau[g])) or tau[g] == pytest.approx(ref, abs=1e-12)


def test_no_hp_columns_is_a_clear_error() -> None:
    with pytest.raises(StatsError, match="no hp"):
        granulated_kendall(_ledger().drop("hp.a", "hp.b", "hp.const"))
