"""The detectable effect: the exact noncentral-t solve against statsmodels and the normal formula, its calibration
by Monte-Carlo (a design simulated with a true effect equal to the MDE is detected with power ≈ 0.8; with no effect,
with rate ≈ alpha), the noise it rests on, and the verdict words for null results."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats
from statsmodels.stats.power import TTestIndPower

from analyze.stats import StatsError
from analyze.stats.power import (
    ALPHA,
    POWER,
    blocked_difference,
    claim_verdict,
    design_sentences,
    detectable_difference,
    detectable_effects,
    detection_power,
    difference_interval,
    difference_test,
    noise,
    null_verdict,
)
from tests.analyze.synthetic import synthetic_ledger


@pytest.mark.parametrize("n_a, n_b", [(3, 3), (5, 12), (40, 40)])
def test_mde_equals_statsmodels_two_sample_t(n_a: int, n_b: int) -> None:
    """Independent ground truth: statsmodels' TTestIndPower solves the same noncentral-t power equation for the pooled
    two-sample t-test (df = n_a + n_b − 2); Cohen's d times σ is the MDE. Both are root-finds: 1e-4 relative."""
    sigma = 0.03
    se = sigma * math.sqrt(1 / n_a + 1 / n_b)
    d = TTestIndPower().solve_power(effect_size=None, nobs1=n_a, alpha=ALPHA, power=POWER, ratio=n_b / n_a)
    assert detectable_difference(se, n_a + n_b - 2) == pytest.approx(d * sigma, rel=1e-4)


def test_mde_at_infinite_df_is_the_textbook_formula() -> None:
    """(z_{0.975} + z_{0.8})·se = 2.8016·se; the far rejection tail adds < 1e-6 power, so 1e-5 relative."""
    expected = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * 0.01
    assert detectable_difference(0.01, math.inf) == pytest.approx(expected, rel=1e-5)
    assert detection_power(expected, 0.01, math.inf) == pytest.approx(0.8, abs=1e-5)


def _simulate(rng: np.random.Generator, effect: float, seeds: tuple[int, ...], blocks: int, sigma: float) -> tuple:
    """One design: ``blocks`` configurations of the other axes (block effects N(0, 0.05)), two levels, ``seeds[c]``
    runs of the level and seeds[-c-1] of the reference in block c; the level adds ``effect``."""
    y, is_level, block, config = [], [], [], []
    for c in range(blocks):
        offset = rng.normal(0, 0.05)
        for lv, n in ((True, seeds[c % len(seeds)]), (False, seeds[-(c % len(seeds)) - 1])):
            y.extend(offset + effect * lv + rng.normal(0, sigma, n))
            is_level.extend([lv] * n)
            block.extend([c] * n)
            config.extend([2 * c + lv] * n)
    is_level = np.array(is_level)
    return np.array(y), is_level, ~is_level, np.array(block), np.array(config)


def _rejection_rate(effect_of_mde: float, seeds: tuple[int, ...], blocks: int, n_sims: int = 4000) -> float:
    rng = np.random.default_rng(7)
    sigma = 0.02
    y, is_level, is_ref, block, config = _simulate(rng, 0.0, seeds, blocks, sigma)
    _, k, _, _, _ = blocked_difference(y, is_level, is_ref, block)
    df = sum(int((config == c).sum()) - 1 for c in np.unique(config))
    effect = effect_of_mde * detectable_difference(sigma * k, df)  # the design's MDE at the true σ
    hits = 0
    for _ in range(n_sims):
        y, is_level, is_ref, block, config = _simulate(rng, effect, seeds, blocks, sigma)
        s, df_hat, _ = noise(y, config, None)
        diff, k_hat, _, _, _ = blocked_difference(y, is_level, is_ref, block)
        lo, hi, _ = difference_interval(diff, s * k_hat, df_hat)
        hits += null_verdict(lo, hi, effect) == "differs"
    return hits / n_sims


@pytest.mark.parametrize("seeds, blocks", [((3,), 4), ((2, 3), 2)])
def test_power_at_the_mde_is_calibrated(seeds: tuple[int, ...], blocks: int) -> None:
    """Simulated with a true effect equal to the MDE, the module's test rejects in 80 % of 4,000 designs. Tolerance
    ±0.025 = 4 Monte-Carlo standard errors (√(0.8·0.2/4000) = 0.0063). The balanced design has 16 df, the
    unbalanced one (2 vs 3 and 3 vs 2 runs in two blocks) 6 df, where the normal formula's MDE would give power
    0.65 (0.75 at 16 df), outside the tolerance: the noncentral-t solve is what passes."""
    assert _rejection_rate(1.0, seeds, blocks) == pytest.approx(POWER, abs=0.025)


def test_false_alarm_rate_without_effect() -> None:
    """No effect: rejections at rate alpha = 0.05 (±0.015, 4.4 MC standard errors of √(0.05·0.95/4000) = 0.0034)."""
    assert _rejection_rate(0.0, (2, 3), 2) == pytest.approx(ALPHA, abs=0.015)


def test_normal_formula_would_be_miscalibrated_at_few_df() -> None:
    """The claim in the calibration test's docstring: at 6 and 16 df the normal MDE has power below 0.8 − 0.025."""
    normal_mde = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert detection_power(normal_mde, 1.0, 6) == pytest.approx(0.649, abs=1e-3)
    assert detection_power(normal_mde, 1.0, 16) < POWER - 0.025
    se, df = 1.0, 6
    assert detectable_difference(se, df) > normal_mde


def test_noise_sources() -> None:
    y = np.array([0.80, 0.82, 0.90, 0.94, 0.5])
    configs = np.array([0, 0, 1, 1, 2])
    s, df, source = noise(y, configs, None)
    assert df == 2 and s == pytest.approx(math.sqrt(((0.01**2) * 2 + (0.02**2) * 2) / 2)) and source == "seed-to-seed spread"
    s, df, source = noise(y, configs, 0.05**2)  # binomial noise larger than the seed spread: the floor
    assert s == pytest.approx(0.05) and df == 2 and source.startswith("test-set binomial")
    s, df, source = noise(y, np.arange(5), 0.01**2)  # no configuration run twice
    assert s == pytest.approx(0.01) and math.isinf(df) and "lower bound" in source
    with pytest.raises(StatsError, match="two seeds"):
        noise(y, np.arange(5), None)


def test_blocked_difference_weights_blocks_by_precision() -> None:
    """d̂ = Σ w_c d_c / Σ w_c with w_c = 1/(1/n_a + 1/n_b), checked by hand on two blocks."""
    y = np.array([1.0, 1.2, 0.0, 0.2, 0.4, 5.0, 3.0])
    level = np.array([True, True, False, False, False, True, False])
    block = np.array([0, 0, 0, 0, 0, 1, 1])
    diff, k, c, n_a, n_b = blocked_difference(y, level, ~level, block)
    w0, w1 = 1 / (1 / 2 + 1 / 3), 1 / (1 / 1 + 1 / 1)
    assert diff == pytest.approx((w0 * (1.1 - 0.2) + w1 * 2.0) / (w0 + w1))
    assert k == pytest.approx(1 / math.sqrt(w0 + w1)) and (c, n_a, n_b) == (2, 3, 4)


def test_detectable_effects_on_a_grid() -> None:
    """A full grid (balanced): diff = the difference of level means, k = √(1/n_a + 1/n_b), the MDE from that; the
    optimizer axis moves nothing in this ledger and is 'undecided', never 'absent'; lr moves the gap and differs."""
    ledger = synthetic_ledger(seed=3, n_seeds=4)
    frame = detectable_effects(ledger, target="gen.gap_acc")
    runs = ledger.filter(pl.col("status") == "FINISHED")
    opt = frame.filter(pl.col("intervention") == "optimizer").row(0, named=True)
    means = runs.group_by("hp.optimizer").agg(pl.col("gen.gap_acc").mean())
    m = dict(zip(means["hp.optimizer"], means["gen.gap_acc"]))
    assert opt["reference"] == "sgd" and opt["diff"] == pytest.approx(m["adam"] - m["sgd"], abs=1e-12)
    k = math.sqrt(1 / opt["n_level"] + 1 / opt["n_reference"])
    assert opt["mde"] == pytest.approx(detectable_difference(opt["sigma"] * k, opt["df"]))
    assert opt["decision"].startswith("undecided (design could detect >= ")
    assert set(frame.filter(pl.col("intervention") == "lr")["decision"]) == {"differs"}
    sentences = design_sentences(frame)
    assert sentences[0].startswith("Smallest difference in gen.gap_acc this design could detect")
    assert any("undecided, not absent" in s for s in sentences)


def test_difference_test_matches_a_t_test() -> None:
    """Two groups, one block: the interval and p equal scipy's pooled two-sample t-test (ground truth), 1e-10."""
    a, b = np.array([0.81, 0.84, 0.80, 0.86]), np.array([0.78, 0.79, 0.83])
    y = np.concatenate([a, b])
    level = np.array([True] * 4 + [False] * 3)
    s, df, _ = noise(y, level.astype(int), None)
    diff, k, _, _, _ = blocked_difference(y, level, ~level, np.zeros(7, dtype=int))
    out = difference_test(diff, s * k, df)
    ref = stats.ttest_ind(a, b)
    ci = ref.confidence_interval(0.95)
    assert out["p"] == pytest.approx(ref.pvalue, rel=1e-10)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_null_and_claim_verdicts() -> None:
    assert null_verdict(0.01, 0.05, 0.02) == "differs"
    assert null_verdict(-0.01, 0.05, 0.02) == "undecided (design could detect >= 0.02)"
    assert null_verdict(-0.01, 0.01, 0.02, effect=0.05, tost_low=-0.008, tost_high=0.008) == "no effect as large as 0.05"
    # a claim of +0.05: reproduced when the CI excludes 0 on the claimed side, not reproduced on the other side or
    # when the 90 % CI excludes ±0.05, undecided (with both effect sizes) otherwise
    assert claim_verdict(0.04, 0.01, 20, 0.05) == "reproduced"
    assert claim_verdict(-0.04, 0.01, 20, 0.05) == "not reproduced"
    assert claim_verdict(0.001, 0.01, 20, 0.05) == "not reproduced"
    undecided = claim_verdict(0.01, 0.03, 20, 0.05)
    mde = detectable_difference(0.03, 20)
    assert undecided == f"undecided (design too weak: detectable effect {mde:.3g} vs paper's 0.05)"
    with pytest.raises(StatsError, match="nonzero"):
        claim_verdict(0.01, 0.01, 20, 0.0)
