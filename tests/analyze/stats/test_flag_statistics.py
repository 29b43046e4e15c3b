"""The flag statistics against values computed by hand in the test (numpy/scipy, independent of the code).

Groups above 50 runs get the CI tanh(artanh ρ ± z₀.₉₇₅·√(1.06/(n − 3))) (Fieller–Hartley–Pearson); two levels of
more than 200 runs each are compared by Z = (z_g − z_r)/√(v/(n_g − 3) + v/(n_r − 3)) with Bonett & Wright's
v = 1 + r̄²/2 at the mean r̄ of the two ρ, and by the strength statistic (|z_g| − |z_r|)/(same SE). The Simpson test's within-level coefficient is the stratified
Σc_x c_y/√(Σc_x² Σc_y²) of within-level centred ranks. Tolerances are 1e-9 relative with no absolute slack
(floating-point noise only), so an error of 0.1 % in any of them fails. Smaller groups (the permutation test and the
Neyman belt) are checked against Monte-Carlo truth in test_rank_intervals.py and test_flag_error_rates.py.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from analyze.stats import break_flags, flag_evidence

Z975 = stats.norm.ppf(0.975)


def _rho(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1])


def _weakening_ledger() -> pl.DataFrame:
    rng = np.random.default_rng(11)
    n_off, n_on = 230, 214
    gap = rng.normal(size=n_off + n_on)
    group = np.array(["off"] * n_off + ["on"] * n_on)
    m = np.where(group == "off", gap + rng.normal(0, 0.3, gap.size), gap + rng.normal(0, 3.0, gap.size))
    return pl.DataFrame({"hp.sam": group, "gen.gap_acc": gap, "measure.m": m})


def test_fisher_z_interval_and_weakening_statistic_by_hand() -> None:
    frame = _weakening_ledger()
    gap, m, grp = frame["gen.gap_acc"].to_numpy(), frame["measure.m"].to_numpy(), frame["hp.sam"].to_numpy()
    on, off = grp == "on", grp == "off"
    n_g, n_r = int(on.sum()), int(off.sum())
    r_g, r_r = _rho(m[on], gap[on]), _rho(m[off], gap[off])
    ci_g = np.tanh(np.arctanh(r_g) + np.array([-1, 1]) * Z975 * np.sqrt(1.06 / (n_g - 3)))
    ci_r = np.tanh(np.arctanh(r_r) + np.array([-1, 1]) * Z975 * np.sqrt(1.06 / (n_r - 3)))
    v = 1 + ((r_g + r_r) / 2) ** 2 / 2
    se = np.sqrt(v / (n_g - 3) + v / (n_r - 3))
    p_diff = 2 * stats.norm.sf(abs(np.arctanh(r_g) - np.arctanh(r_r)) / se)
    p_strength = 2 * stats.norm.sf(abs(abs(np.arctanh(r_g)) - abs(np.arctanh(r_r))) / se)
    t_r = r_r * np.sqrt((n_r - 2) / (1 - r_r**2))
    p_ref = 2 * stats.t.sf(abs(t_r), n_r - 2)

    (rec,) = [r for r in flag_evidence(frame) if r["kind"] == "comparison"]
    assert (rec["n_group"], rec["n_reference"]) == (n_g, n_r)
    assert rec["r_group"] == pytest.approx(r_g, rel=1e-9, abs=0) and rec["r_reference"] == pytest.approx(r_r, rel=1e-9, abs=0)
    assert rec["ci_group"] == pytest.approx(tuple(ci_g), rel=1e-9, abs=0)
    assert rec["ci_reference"] == pytest.approx(tuple(ci_r), rel=1e-9, abs=0)
    assert rec["p_diff"] == pytest.approx(p_diff, rel=1e-9, abs=0)
    assert rec["p_strength"] == pytest.approx(p_strength, rel=1e-9, abs=0)
    assert rec["p_reference"] == pytest.approx(p_ref, rel=1e-9, abs=0)

    flags = break_flags(frame)
    (row,) = flags.filter(pl.col("flag") == "weakening").iter_rows(named=True)
    # the weakening test is intersection–union: max(p of the strength difference, p of the stronger ρ)
    assert row["p_value"] == pytest.approx(max(p_strength, p_ref), rel=1e-9, abs=0)
    assert row["p_adj"] == pytest.approx(max(p_strength, p_ref), rel=1e-9, abs=0)
    assert (row["r_group_ci_low"], row["r_group_ci_high"]) == pytest.approx(tuple(ci_g), rel=1e-9, abs=0)
    assert (row["r_reference_ci_low"], row["r_reference_ci_high"]) == pytest.approx(tuple(ci_r), rel=1e-9, abs=0)


def test_weakening_in_either_level_of_two_is_one_test_shown_from_the_weaker_level() -> None:
    frame = _weakening_ledger()
    flipped = frame.with_columns(pl.col("hp.sam").replace({"on": "off", "off": "on"}))  # the reference is now the weak one
    a = break_flags(frame).filter(pl.col("flag") == "weakening").row(0, named=True)
    b = break_flags(flipped).filter(pl.col("flag") == "weakening").row(0, named=True)
    assert (a["group"], a["reference"]) == ("on", "off") and (b["group"], b["reference"]) == ("off", "on")
    assert a["p_value"] == pytest.approx(b["p_value"], rel=1e-12) and a["r_group"] == pytest.approx(b["r_group"], rel=1e-12)


def test_simpson_pooled_and_within_statistics_by_hand() -> None:
    rng = np.random.default_rng(5)
    parts, sizes = [], (25, 31, 40)
    for level, (offset, n) in enumerate(zip([0.0, 3.0, 6.0], sizes)):
        gap = offset + rng.normal(0, 0.5, n)
        m = -gap + 3 * offset + rng.normal(0, 0.3, n)
        parts.append(pl.DataFrame({"hp.width": [level] * n, "gen.gap_acc": gap, "measure.m": m}))
    frame = pl.concat(parts)
    gap, m, w = frame["gen.gap_acc"].to_numpy(), frame["measure.m"].to_numpy(), frame["hp.width"].to_numpy()
    r_pool = _rho(m, gap)
    p_pool = stats.spearmanr(m, gap).pvalue
    cx = np.concatenate([(stats.rankdata(m[w == k]) - (n + 1) / 2) / n for k, n in enumerate(sizes)])
    cy = np.concatenate([(stats.rankdata(gap[w == k]) - (n + 1) / 2) / n for k, n in enumerate(sizes)])
    r_within = (cx * cy).sum() / np.sqrt((cx * cx).sum() * (cy * cy).sum())
    ci_pool = np.tanh(np.arctanh(r_pool) + np.array([-1, 1]) * Z975 * np.sqrt(1.06 / (gap.size - 3)))

    (rec,) = [r for r in flag_evidence(frame) if r["kind"] == "simpson"]
    assert rec["r_pooled"] == pytest.approx(r_pool, rel=1e-9, abs=0) and rec["p_pooled"] == pytest.approx(p_pool, rel=1e-9, abs=0)
    assert rec["r_within"] == pytest.approx(r_within, rel=1e-9, abs=0)
    assert rec["ci_pooled"] == pytest.approx(tuple(ci_pool), rel=1e-9, abs=0)
    (row,) = break_flags(frame).filter(pl.col("flag") == "simpson_reversal").iter_rows(named=True)
    assert row["p_value"] == pytest.approx(max(p_pool, rec["p_within"]), rel=1e-9, abs=0)
    assert row["r_group"] == pytest.approx(r_within, rel=1e-9, abs=0) and row["r_reference"] == pytest.approx(r_pool, rel=1e-9, abs=0)
