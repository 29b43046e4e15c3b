"""The verdict frames: measure × intervention verdicts, reversal explanations and the opening sentences."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from analyze.stats import report_frames
from analyze.stats.verdict import VERDICTS, kendall_ci, measure_family
from tests.analyze.synthetic import synthetic_ledger


def _attack_ledger(seed: int = 0, n_seeds: int = 12) -> pl.DataFrame:
    """margin_mean (expected: larger margin, smaller gap) behaves as expected within each attack size, but the
    attack runs have both a larger gap and a larger margin, so the pooled τ is reversed (positive)."""
    rng = np.random.default_rng(seed)
    rows = []
    for attack in (0, 200):
        for bs in (64, 512):
            for s in range(n_seeds):
                gap = 0.05 + 0.3 * (attack > 0) + rng.normal(0, 0.02)
                margin = 1.0 + 3.5 * (attack > 0) - 5 * gap + rng.normal(0, 0.12)
                rows.append({"status": "FINISHED", "seed": s, "hp.attack_size": attack, "hp.batch_size": bs,
                             "measure.margin_mean": margin, "diag.hessian_trace_se": rng.normal(),
                             "measure.hessian_trace": gap * 10 + rng.normal(0, 0.05), "gen.gap_acc": gap})
    return pl.DataFrame(rows)


def test_reversal_is_explained_by_the_attack_set() -> None:
    frames, notes = report_frames(_attack_ledger(), resamples=0, min_group=8)
    rank = frames["rank"].filter(pl.col("measure") == "measure.margin_mean").row(0, named=True)
    assert rank["direction"] == "reversed" and rank["kendall_tau"] > 0
    (row,) = frames["reversal_explanations"].iter_rows(named=True)
    assert row["measure"] == "measure.margin_mean" and row["explained_by"] == "attack_size"
    assert row["ci_low"] < row["tau_pooled"] < row["ci_high"]
    s = row["sentence"]
    assert s.startswith(f"margin_mean is reversed overall (τ = {rank['kendall_tau']:+.2f}")
    assert "because of attack_size: within attack_size = 0, τ = -" in s and "within attack_size = 200, τ = -" in s
    # every τ in the sentence is the within-level Kendall τ-b of scipy, with the Fieller interval
    from scipy import stats

    runs = _attack_ledger()
    inside = runs.filter(pl.col("hp.attack_size") == 0)
    tau = stats.kendalltau(inside["measure.margin_mean"], inside["gen.gap_acc"]).statistic
    lo, hi = kendall_ci(tau, inside.height, 0.95)
    assert f"τ = {tau:+.2f} [{lo:.2f}, {hi:.2f}] (n = {inside.height})" in s
    sentences = frames["verdict_sentences"]["sentence"].to_list()
    assert sentences[0].startswith("hessian_trace (τ = +") and "predicts gen.gap_acc" in sentences[0]
    assert "margin_mean reverses along attack_size" in sentences[1] and sentences[2] == s
    verdicts = {(r["measure"], r["intervention"]): (r["verdict"], r["pooled_relation"])
                for r in frames["verdict_matrix"].iter_rows(named=True)}
    assert verdicts[("measure.margin_mean", "attack_size")] == ("reverses", "reversed")
    assert verdicts[("measure.hessian_trace", "attack_size")] == ("holds", "expected")


def test_unexplained_reversal() -> None:
    rng = np.random.default_rng(3)
    n = 48
    gap = rng.normal(0.1, 0.02, n)
    frame = pl.DataFrame({"hp.batch_size": [64, 512] * (n // 2), "gen.gap_acc": gap,
                          "measure.margin_mean": gap * 5 + rng.normal(0, 0.01, n)})  # reversed in every group
    frames, _ = report_frames(frame, resamples=0, min_group=8)
    (row,) = frames["reversal_explanations"].iter_rows(named=True)
    assert row["explained_by"] is None and "unexplained" in row["sentence"]
    assert any("unexplained" in s for s in frames["verdict_sentences"]["sentence"])


def test_a_wrong_sign_that_is_not_significant_is_no_reversal_to_explain() -> None:
    # margin_mean is pure noise: its pooled τ has some sign, but no significant one, so it is not "reversed overall"
    rng = np.random.default_rng(17)  # seeded so that the noise τ is positive (the wrong sign for a margin), p ≈ 0.23
    n = 48
    frame = pl.DataFrame({"hp.batch_size": [64, 512] * (n // 2), "gen.gap_acc": rng.normal(0.1, 0.02, n),
                          "measure.margin_mean": rng.normal(0, 1, n)})
    frames, _ = report_frames(frame, resamples=0, min_group=8)
    rank = frames["rank"].row(0, named=True)
    assert rank["direction"] == "reversed" and rank["kendall_p"] > 0.05  # the premise: wrong sign, not significant
    assert frames["reversal_explanations"].height == 0
    assert not any("reversed overall" in s for s in frames["verdict_sentences"]["sentence"])


def test_kendall_interval_formula() -> None:
    # above 50 runs: tanh(artanh τ ± 1.959964 √(0.437/(n − 4))), by hand for τ = 0.3, n = 59
    half = 1.959963984540054 * np.sqrt(0.437 / 55)
    assert kendall_ci(0.3, 59, 0.95) == pytest.approx((np.tanh(np.arctanh(0.3) - half), np.tanh(np.arctanh(0.3) + half)), rel=1e-12)
    assert kendall_ci(0.3, 4, 0.95) == (None, None)
    lo, hi = kendall_ci(1.0, 8, 0.95)  # small groups: the Neyman belt (test_rank_intervals), never a point
    assert hi == 1.0 and lo < 0.9


def test_verdict_matrix_rows_and_sentences() -> None:
    frames, _ = report_frames(synthetic_ledger(seed=2, n_noise=1), resamples=0)
    m = frames["verdict_matrix"]
    assert set(m.columns) >= {"measure", "family", "target", "intervention", "axes", "verdict", "tau_pooled",
                              "tau_within", "n_runs", "evidence", "sort_key"}
    assert m.height == 2 * 4 and set(m["verdict"]) <= set(VERDICTS)
    assert m["sort_key"].is_sorted()
    planted = {r["intervention"]: r for r in m.filter(pl.col("measure") == "measure.planted").iter_rows(named=True)}
    assert planted["optimizer"]["verdict"] == "reverses" and planted["optimizer"]["axes"] == ["hp.optimizer"]
    assert "adam" in planted["optimizer"]["evidence"]
    assert {planted[k]["verdict"] for k in ("batch_size", "lr", "dropout")} == {"holds"}
    assert "optimizer = sgd: τ = +" in planted["optimizer"]["tau_within"] and "(n = 60)" in planted["optimizer"]["tau_within"]
    sentences = frames["verdict_sentences"]["sentence"].to_list()
    assert 3 <= len(sentences) <= 6
    assert "planted reverses along optimizer" in sentences[1]
    assert frames["flag_coverage"]["n_untestable"].sum() == 0


def test_untestable_relationships_say_what_would_make_them_testable() -> None:
    frame = synthetic_ledger(seed=0, n_seeds=1, break_group=None, n_noise=0)  # 24 runs: 8 per lr level, 12 per other
    frames, _ = report_frames(frame, resamples=0, min_group=10)
    m = frames["verdict_matrix"]
    lr = m.filter(pl.col("intervention") == "lr").row(0, named=True)
    assert lr["verdict"] == "not_testable" and "more seeds" in lr["evidence"] and "at least 10" in lr["evidence"]
    sentences = " ".join(frames["verdict_sentences"]["sentence"])
    assert "could not be tested" in sentences and "--scale cpu" in sentences
    assert "No break was flagged" not in sentences or frames["flag_coverage"]["n_tested"].sum() > 0
    cov = frames["flag_coverage"].filter(pl.col("axis") == "hp.lr").row(0, named=True)
    assert (cov["n_tested"], cov["n_untestable"]) == (0, 1)


def test_measures_only_never_diagnostics() -> None:
    frames, _ = report_frames(_attack_ledger(), resamples=0)
    for name in ("rank", "verdict_matrix", "flags", "granulated", "sign_error", "cmi"):
        if name in frames and "measure" in frames[name].columns:
            assert all(m.startswith("measure.") for m in frames[name]["measure"].unique()), name
    assert measure_family("measure.margin_mean") in ("margins", "other")  # "other" only when torch is missing


def test_without_interventions_the_sentences_say_what_to_vary() -> None:
    rng = np.random.default_rng(0)
    gap = rng.normal(size=30)
    frame = pl.DataFrame({"gen.gap_acc": gap, "measure.margin_mean": -gap + rng.normal(0, 0.1, 30)})
    frames, notes = report_frames(frame, resamples=0)
    sentences = frames["verdict_sentences"]["sentence"].to_list()
    assert len(sentences) == 3 and frames["verdict_matrix"].height == 0
    assert sentences[0].startswith("margin_mean (τ = -0.") and "unknown" in sentences[0]
    assert "no hyperparameter varies" in sentences[1] and "vary at least one hyperparameter" in sentences[2]


def test_a_pooled_relation_carried_by_one_level_is_not_claimed_to_hold() -> None:
    # hessian_trace tracks the gap only inside the attack runs; inside attack_size = 0 it runs weakly against it
    # (τ ≈ -0.26, too weak for a flag at this size). Pooled it is positive and significant (the expected sign) and
    # nothing is flagged, but the verdict must not call it a predictor that holds everywhere.
    rng = np.random.default_rng(0)
    rows = []
    for attack in (0, 200):
        for bs in (64, 512):
            for s in range(12):
                gap = 0.05 + 0.3 * (attack > 0) + rng.normal(0, 0.02)
                trace = 10 * gap if attack else 1.0 - 0.5 * gap + rng.normal(0, 0.02)
                rows.append({"status": "FINISHED", "seed": s, "hp.attack_size": attack, "hp.batch_size": bs,
                             "measure.hessian_trace": trace + rng.normal(0, 0.01), "gen.gap_acc": gap})
    frames, _ = report_frames(pl.DataFrame(rows), resamples=0, min_group=8)
    sentences = frames["verdict_sentences"]["sentence"].to_list()
    assert not any("hold along every" in s or "holds along every" in s for s in sentences)
    matrix = frames["verdict_matrix"].filter(pl.col("intervention") == "attack_size").row(0, named=True)
    assert matrix["pooled_relation"] == "expected"
    # holds needs the expected sign in every testable level (and the level-vs-rest flags now see the break too)
    assert matrix["verdict"] in ("weakens", "reverses") and matrix["wrong_sign_levels"].startswith("attack_size = 0: τ = -0.26")
    assert any(f"hessian_trace {matrix['verdict']} along attack_size" in s for s in sentences)


def _opposite_levels_ledger(n: int = 40, seed: int = 5) -> pl.DataFrame:
    """λ_max-like case: τ > 0 within sgd and τ < 0 within adam, each CI excluding 0: the cell must read "reverses"
    whether or not a flag family fired."""
    rng = np.random.default_rng(seed)
    rows = []
    for opt, sign in (("sgd", 1.0), ("adam", -1.0)):
        gap = rng.normal(0.1, 0.02, n)
        m = sign * gap + rng.normal(0, 0.012, n)
        rows += [{"hp.optimizer": opt, "gen.gap_acc": g, "measure.lambda_max": v} for g, v in zip(gap, m)]
    return pl.DataFrame(rows)


def test_opposite_significant_levels_make_the_cell_reverse_without_a_flag() -> None:
    from analyze.stats.verdict import cell_verdict

    taus = [{"level": "sgd", "n": 40, "tau": 0.3, "side": 1}, {"level": "adam", "n": 40, "tau": -0.3, "side": -1}]
    assert cell_verdict(taus, set(), True, 1, 1, 8)[0] == "reverses"  # no flag raised: the CIs decide
    assert cell_verdict(taus[:1] + [{"level": "adam", "n": 40, "tau": -0.1, "side": 0}], set(), True, 1, 1, 8)[0] == "undecided"
    assert cell_verdict(taus[:1] + [{"level": "adam", "n": 40, "tau": 0.1, "side": 0}], set(), True, 1, 1, 8)[0] == "holds"
    assert cell_verdict(taus[:1] + [{"level": "adam", "n": 5, "tau": -0.9, "side": 0}], set(), False, 1, 1, 8)[0] == "not_testable"
    frames, _ = report_frames(_opposite_levels_ledger(), resamples=0)
    row = frames["verdict_matrix"].row(0, named=True)
    assert row["verdict"] == "reverses"
    assert "optimizer = sgd: τ = +" in row["tau_within"] and "optimizer = adam: τ = -" in row["tau_within"]


def test_pooled_significance_word_follows_the_interval_shown() -> None:
    from analyze.stats.verdict import pooled_relations

    rank = pl.DataFrame({"measure": ["measure.sharpness", "measure.lambda_max"], "kendall_tau": [0.12, 0.3],
                         "kendall_p": [0.001, 0.2], "kendall_ci_low": [-0.012, 0.05], "kendall_ci_high": [0.248, 0.5],
                         "n": [200, 200], "direction": ["as expected", "as expected"], "expected_sign": [1, 1]})
    rel = pooled_relations(rank, 0.05)
    # a p of 0.001 with a CI containing 0 is "none"; a p of 0.2 with a CI above 0 is "expected": the CI decides
    assert rel["measure.sharpness"][1] == "none" and rel["measure.lambda_max"][1] == "expected"


def test_because_of_x_needs_every_level_of_x_on_the_expected_side() -> None:
    # margin_mean (expected: negative τ with the gap) is reversed pooled; inside attack 0 it is strongly negative,
    # inside attack 200 it is positive: attack_size does not explain the reversal, since one of its levels is itself reversed
    rng = np.random.default_rng(8)
    rows = []
    for attack in (0, 200):
        for bs in (64, 512):
            for _ in range(15):
                gap = 0.05 + 0.3 * (attack > 0) + rng.normal(0, 0.02)
                margin = (1.0 - 5 * gap if attack == 0 else 3.0 + 5 * gap) + rng.normal(0, 0.05)
                rows.append({"hp.attack_size": attack, "hp.batch_size": bs, "gen.gap_acc": gap, "measure.margin_mean": margin})
    frames, _ = report_frames(pl.DataFrame(rows), resamples=0, min_group=8)
    (row,) = frames["reversal_explanations"].iter_rows(named=True)
    assert row["explained_by"] != "attack_size" and "because of attack_size" not in row["sentence"]


def test_a_break_in_the_reference_level_is_not_a_holding_cell() -> None:
    rng = np.random.default_rng(0)
    n = 48
    gap = rng.normal(0.1, 0.02, 2 * n)
    bs = np.repeat([32, 512], n)
    trace = np.where(bs == 512, gap + rng.normal(0, 0.002, 2 * n), rng.normal(0, 1, 2 * n))  # noise at 32, the reference
    frames, _ = report_frames(pl.DataFrame({"hp.batch_size": bs, "gen.gap_acc": gap, "measure.hessian_trace": trace}),
                              resamples=0)
    row = frames["verdict_matrix"].row(0, named=True)
    assert row["verdict"] == "weakens" and "batch_size=32" in row["evidence"]
    sentences = frames["verdict_sentences"]["sentence"].to_list()
    assert not any("holds along every" in s for s in sentences) and "hessian_trace weakens along batch_size" in sentences[1]


def test_every_catalog_measure_has_a_family():
    """The verdict matrix groups measures by family; a measure added to the catalog must be placed in one."""
    from collect.catalog import CATALOG

    from analyze.stats.verdict import FAMILIES

    placed = {name for entries in FAMILIES.values() for name in entries}
    missing = [e.name for e in CATALOG if e.name not in placed and e.name != "generalization"]
    assert not missing, f"add {missing} to a family in analyze.stats.verdict.FAMILIES"
