"""Granulated Kendall Ψ on hand-built ledgers whose answers are worked out below."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from scipy import stats

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
    out = granulated_kendall(_ledger(), target="gen.gap_acc", min_cells=1)
    psi = dict(zip(out["axis"], out["psi"]))
    assert psi["hp.a"] == pytest.approx(1 / 3, abs=1e-12)
    assert psi["hp.b"] == pytest.approx(0.0, abs=1e-12)
    assert psi["ALL"] == pytest.approx(1 / 6, abs=1e-12)
    cells = dict(zip(out["axis"], out["n_cells"]))
    undefined = dict(zip(out["axis"], out["n_cells_undefined"]))
    assert (cells["hp.a"], cells["hp.b"], undefined["hp.b"]) == (2, 2, 1)
    assert "hp.const" not in psi  # a constant hp column is not an axis


def test_too_few_cells_give_no_psi_at_the_default() -> None:
    out = granulated_kendall(_ledger(), target="gen.gap_acc")  # 2 cells per axis, fewer than 6
    for axis in ("hp.a", "hp.b"):
        row = out.filter(pl.col("axis") == axis).row(0, named=True)
        assert row["psi"] is None and row["n_cells"] == 2 and "not enough cells" in row["note"]


def _two_level_ledger(n_cells: int, flip: int, seed: int = 0) -> pl.DataFrame:
    """Axis hp.sam with two levels, crossed with hp.width (n_cells values); in every cell the measure orders the two
    configurations like the gap, except in the first ``flip`` cells. Two seeds per configuration."""
    rng = np.random.default_rng(seed)
    rows = []
    for w, sam in itertools.product(range(n_cells), (0, 1)):
        gap = 0.1 + 0.01 * w + 0.02 * sam
        sign = -1 if w < flip else 1
        for s in range(2):
            rows.append({"hp.width": w, "hp.sam": sam, "seed": s, "gen.gap_acc": gap + rng.normal(0, 1e-4),
                         "measure.m": sign * 0.02 * sam + 0.01 * w + rng.normal(0, 1e-4)})
    return pl.DataFrame(rows)


def test_two_level_axis_gets_the_mean_of_cell_signs_with_a_sign_test_and_ci() -> None:
    out = granulated_kendall(_two_level_ledger(10, flip=2))
    row = out.filter(pl.col("axis") == "hp.sam").row(0, named=True)
    assert row["n_cells"] == 10 and (row["n_positive"], row["n_negative"]) == (8, 2)
    assert row["psi"] == pytest.approx((8 - 2) / 10, abs=1e-12) and row["note"] is None
    assert row["sign_p"] == pytest.approx(stats.binomtest(8, 10, 0.5).pvalue, rel=1e-12)
    # Clopper–Pearson by hand: beta quantiles of the share of positive cells, mapped by ψ = 2p − 1
    lo = stats.beta.ppf(0.025, 8, 3)
    hi = stats.beta.ppf(0.975, 9, 2)
    assert (row["psi_ci_low"], row["psi_ci_high"]) == pytest.approx((2 * lo - 1, 2 * hi - 1), rel=1e-9)
    assert row["psi_ci_low"] < row["psi"] < row["psi_ci_high"]


def test_multi_level_axis_ci_is_the_t_interval_over_cells() -> None:
    out = granulated_kendall(_two_level_ledger(10, flip=2))
    row = out.filter(pl.col("axis") == "hp.width").row(0, named=True)  # 10 levels in each of 2 cells: too few cells
    assert row["psi"] is None and "not enough cells" in row["note"]
    from analyze.stats.granulated import psi_uncertainty

    taus = np.array([0.2, 0.5, -0.1, 0.8, 0.4, 0.3])
    got = psi_uncertainty(taus, 0.95, True)
    half = stats.t.ppf(0.975, 5) * taus.std(ddof=1) / np.sqrt(6)
    assert (got["psi_ci_low"], got["psi_ci_high"]) == pytest.approx((taus.mean() - half, taus.mean() + half), rel=1e-12)


def test_grouped_tau_matches_scipy_per_group() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 30, 500)
    codes[:450] = codes[:450] % 5  # 5 groups of ~90 plus small ones
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
