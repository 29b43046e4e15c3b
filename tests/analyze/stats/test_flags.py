"""Break flags: the planted break is found, and nothing else, over several seeds; each flag kind on its own case."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from analyze.stats import StatsError, break_flags, flag_evidence, reference_value
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


def _reference_break_ledger(seed: int = 0, n: int = 48) -> pl.DataFrame:
    """The measure tracks the gap at batch 512 (ρ ≈ 0.99) and is noise at batch 32, the automatic reference."""
    rng = np.random.default_rng(seed)
    gap = rng.normal(0.1, 0.02, 2 * n)
    bs = np.repeat([32, 512], n)
    m = np.where(bs == 512, gap + rng.normal(0, 0.002, 2 * n), rng.normal(0, 1, 2 * n))
    return pl.DataFrame({"hp.batch_size": bs, "gen.gap_acc": gap, "measure.m": m})


def test_a_break_in_the_reference_level_is_flagged() -> None:
    frame = _reference_break_ledger()
    assert reference_value("hp.batch_size", [32, 512]) == 32  # the premise: 32 is the automatic reference
    flags = break_flags(frame).filter(pl.col("flag") != "too_small")
    assert flags.select("flag", "group", "reference").rows() == [("weakening", "32", "512")]
    row = flags.row(0, named=True)
    assert abs(row["r_group"]) < 0.4 < 0.95 < row["r_reference"] and row["p_adj"] < 1e-3
    # the same answer whichever level is named the reference: it is a presentation choice
    again = break_flags(frame, references={"hp.batch_size": 512}).filter(pl.col("flag") != "too_small")
    assert again.select("flag", "group", "reference").rows() == [("weakening", "32", "512")]


def test_a_break_in_any_level_of_three_is_flagged_against_each_other_level() -> None:
    rng = np.random.default_rng(4)
    n = 40
    lr = np.repeat([0.01, 0.1, 1.0], n)
    gap = rng.normal(0.1, 0.02, 3 * n)
    m = np.where(lr == 0.01, rng.normal(0, 1, 3 * n), gap + rng.normal(0, 0.004, 3 * n))  # noise in the reference
    flags = break_flags(pl.DataFrame({"hp.lr": lr, "gen.gap_acc": gap, "measure.m": m})).filter(pl.col("flag") != "too_small")
    assert sorted(flags.select("flag", "group", "reference").rows()) == [("weakening", "0.01", "0.1"), ("weakening", "0.01", "1")]


def test_small_groups_with_perfect_rank_agreement_give_no_point_interval() -> None:
    rng = np.random.default_rng(2)
    n = 8
    gap = rng.normal(0.1, 0.02, 2 * n)
    bs = np.repeat([64, 512], n)
    m = np.where(bs == 64, gap, gap + rng.normal(0, 0.004, 2 * n))  # ρ = 1 exactly at 64, ≈ 0.9 at 512
    records = [r for r in flag_evidence(pl.DataFrame({"hp.batch_size": bs, "gen.gap_acc": gap, "measure.m": m}))
               if r["kind"] == "comparison"]
    (rec,) = records
    lo, hi = rec["ci_group"] if rec["r_group"] == 1.0 else rec["ci_reference"]
    assert 1.0 in (rec["r_group"], rec["r_reference"]) and f"[{lo:.2f}, {hi:.2f}]" != "[1.00, 1.00]" and lo < 0.95
    assert rec["p_strength"] > 0.05  # the same relation: no weakening from a perfect ρ in 8 runs
