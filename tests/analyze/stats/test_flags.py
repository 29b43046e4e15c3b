"""Break flags: the planted break is found, and nothing else, over several seeds; each flag kind on its own case."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from analyze.stats import StatsError, break_flags, reference_value
from tests.analyze.synthetic import synthetic_ledger


@pytest.mark.parametrize("seed", range(5))
def test_planted_reversal_is_the_only_flag(seed: int) -> None:
    flags = break_flags(synthetic_ledger(seed=seed, n_failed=3))
    assert flags.select("flag", "measure", "axis", "group", "reference").rows() == [
        ("sign_reversal", "measure.planted", "hp.optimizer", "adam", "sgd")
    ]
    row = flags.row(0, named=True)
    assert row["r_group"] < 0 < row["r_reference"] and row["p_adj"] < 0.05
    assert row["r_group_ci_low"] <= row["r_group"] <= row["r_group_ci_high"]
    assert "adam" in row["sentence"] and "reverse" in row["sentence"]


@pytest.mark.parametrize("seed", range(3))
def test_planted_decoupling_is_the_only_flag(seed: int) -> None:
    flags = break_flags(synthetic_ledger(seed=seed, break_kind="decoupling"))
    assert flags.select("flag", "measure", "axis", "group").rows() == [
        ("decoupling", "measure.planted", "hp.optimizer", "adam")
    ]


def test_no_break_no_flag() -> None:
    assert break_flags(synthetic_ledger(seed=7, break_group=None)).height == 0


def test_weakening() -> None:
    rng = np.random.default_rng(0)
    n = 120
    group = np.array(["on", "off"] * (n // 2))
    gap = rng.normal(size=n)
    m = np.where(group == "off", gap + rng.normal(0, 0.1, n), gap + rng.normal(0, 3.0, n))  # same sign, far weaker
    frame = pl.DataFrame({"hp.sam": group, "gen.gap_acc": gap, "measure.m": m})
    flags = break_flags(frame)
    assert flags.select("flag", "group", "reference").rows() == [("weakening", "on", "off")]


def test_simpson_reversal() -> None:
    rng = np.random.default_rng(1)
    rows = []
    for level, offset in enumerate([0.0, 3.0, 6.0]):
        gap = offset + rng.normal(0, 0.5, 40)
        m = -gap + 2 * offset * 1.5 + rng.normal(0, 0.2, 40)  # falls within each group, rises across groups
        rows.append(pl.DataFrame({"hp.width": [level] * 40, "gen.gap_acc": gap, "measure.m": m}))
    flags = break_flags(pl.concat(rows))
    simpson = flags.filter(pl.col("flag") == "simpson_reversal")
    assert simpson.height == 1
    row = simpson.row(0, named=True)
    assert row["r_reference"] > 0 > row["r_group"] and "Simpson" in row["sentence"]


def test_small_groups_are_reported_not_skipped() -> None:
    frame = synthetic_ledger(seed=0, break_group=None).filter(
        ~((pl.col("hp.dropout") == 0.25) & (pl.col("seed") > 0))  # dropout=0.25 keeps 12 runs, the rest 60
    ).filter(~((pl.col("hp.dropout") == 0.25) & (pl.col("hp.lr") != 0.01)))  # ... and then only 4
    flags = break_flags(frame, min_group=8)
    small = flags.filter(pl.col("flag") == "too_small")
    assert set(small["axis"]) == {"hp.dropout"} and set(small["group"]) == {"0.25"}
    assert small.height == 3  # one per measure
    assert "not tested" in small["sentence"][0]


def test_reference_heuristics_and_errors() -> None:
    assert reference_value("hp.optimizer", ["adam", "sgd"]) == "sgd"
    assert reference_value("hp.batch_size", [512, 64]) == 64
    assert reference_value("hp.alpha_scale", [0.5, 1.0, 4.0]) == 1.0
    assert reference_value("hp.batch_norm", [True, False]) is False
    assert reference_value("hp.sam_rho", [0.05, None]) is None
    assert reference_value("tag.intervention", ["large_lr", "baseline"]) == "baseline"
    assert reference_value("tag.intervention", ["lr", "bn"], [1, 2]) == "bn"  # else the most common value
    with pytest.raises(StatsError, match="nothing to group by"):
        break_flags(pl.DataFrame({"gen.gap_acc": [0.1, 0.2], "measure.m": [1.0, 2.0]}))
    with pytest.raises(StatsError, match="hp.nope"):
        break_flags(synthetic_ledger(), group_by=["hp.nope"])


def test_presorted_spearman_and_mann_whitney_equal_scipy() -> None:
    from scipy import stats

    from analyze.stats.flags import _Ranker

    rng = np.random.default_rng(3)
    x = rng.integers(0, 9, 300).astype(float)  # ties
    y = rng.normal(size=300)
    group, ref = rng.random(300) > 0.6, rng.random(300) > 0.5
    ref &= ~group
    ranker = _Ranker(x, y)
    r, p = ranker.spearman(group)
    ref_sp = stats.spearmanr(x[group], y[group])
    assert r == pytest.approx(ref_sp.statistic, abs=1e-12) and p == pytest.approx(ref_sp.pvalue, rel=1e-9)
    for which, v in (("x", x), ("y", y)):
        p, effect = ranker.shift(which, group, ref)
        mw = stats.mannwhitneyu(v[group], v[ref], alternative="two-sided")
        assert p == pytest.approx(mw.pvalue, rel=1e-9)
        assert effect == pytest.approx(2 * mw.statistic / (group.sum() * ref.sum()) - 1, abs=1e-12)
