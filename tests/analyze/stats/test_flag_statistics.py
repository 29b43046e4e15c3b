"""The flag statistics against values computed by hand in the test (numpy/scipy, independent of the code).

Fisher's z of Spearman's ρ with the Fieller–Hartley–Pearson variance 1.06/(n − 3): the CI
tanh(artanh ρ ± z₀.₉₇₅·√(1.06/(n − 3))), the difference statistic Z = (z_g − z_r)/√(1.06/(n_g − 3) + 1.06/(n_r − 3))
of the weakening test, and the Simpson test's pooled ρ and n-weighted within-group z̄ = Σ(n_g − 3)z_g/Σ(n_g − 3)
with SE √(1.06/Σ(n_g − 3)). Tolerances are 1e-9 relative with no absolute slack (floating-point noise only; tiny
p-values are compared relatively too), so an error of 5 % — or of 0.1 % — in any of them fails.
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
    n_off, n_on = 34, 27
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
    z_stat = (np.arctanh(r_g) - np.arctanh(r_r)) / np.sqrt(1.06 / (n_g - 3) + 1.06 / (n_r - 3))
    p_diff = 2 * stats.norm.sf(abs(z_stat))
    t_r = r_r * np.sqrt((n_r - 2) / (1 - r_r**2))
    p_ref = 2 * stats.t.sf(abs(t_r), n_r - 2)

    (rec,) = [r for r in flag_evidence(frame) if r["kind"] == "comparison"]
    assert (rec["n_group"], rec["n_reference"]) == (n_g, n_r)
    assert rec["r_group"] == pytest.approx(r_g, rel=1e-9, abs=0) and rec["r_reference"] == pytest.approx(r_r, rel=1e-9, abs=0)
    assert rec["ci_group"] == pytest.approx(tuple(ci_g), rel=1e-9, abs=0)
    assert rec["ci_reference"] == pytest.approx(tuple(ci_r), rel=1e-9, abs=0)
    assert rec["p_diff"] == pytest.approx(p_diff, rel=1e-9, abs=0)
    assert rec["p_reference"] == pytest.approx(p_ref, rel=1e-9, abs=0)

    flags = break_flags(frame)
    (row,) = flags.filter(pl.col("flag") == "weakening").iter_rows(named=True)
    # the weakening test is intersection–union: max(p of the difference, p of the reference ρ); one test in its family
    assert row["p_value"] == pytest.approx(max(p_diff, p_ref), rel=1e-9, abs=0)
    assert row["p_adj"] == pytest.approx(max(p_diff, p_ref), rel=1e-9, abs=0)
    assert (row["r_group_ci_low"], row["r_group_ci_high"]) == pytest.approx(tuple(ci_g), rel=1e-9, abs=0)
    assert (row["r_reference_ci_low"], row["r_reference_ci_high"]) == pytest.approx(tuple(ci_r), rel=1e-9, abs=0)


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
    zs = np.array([np.arctanh(_rho(m[w == k], gap[w == k])) for k in range(3)])
    weights = np.array(sizes, dtype=float) - 3
    zbar = (weights * zs).sum() / weights.sum()
    p_within = 2 * stats.norm.sf(abs(zbar) / np.sqrt(1.06 / weights.sum()))
    ci_pool = np.tanh(np.arctanh(r_pool) + np.array([-1, 1]) * Z975 * np.sqrt(1.06 / (gap.size - 3)))

    (rec,) = [r for r in flag_evidence(frame) if r["kind"] == "simpson"]
    assert rec["r_pooled"] == pytest.approx(r_pool, rel=1e-9, abs=0) and rec["p_pooled"] == pytest.approx(p_pool, rel=1e-9, abs=0)
    assert rec["r_within"] == pytest.approx(np.tanh(zbar), rel=1e-9, abs=0)
    assert rec["p_within"] == pytest.approx(p_within, rel=1e-9, abs=0)
    assert rec["ci_pooled"] == pytest.approx(tuple(ci_pool), rel=1e-9, abs=0)
    (row,) = break_flags(frame).filter(pl.col("flag") == "simpson_reversal").iter_rows(named=True)
    assert row["p_value"] == pytest.approx(max(p_pool, p_within), rel=1e-9, abs=0)
    assert row["r_group"] == pytest.approx(np.tanh(zbar), rel=1e-9, abs=0) and row["r_reference"] == pytest.approx(r_pool, rel=1e-9, abs=0)
