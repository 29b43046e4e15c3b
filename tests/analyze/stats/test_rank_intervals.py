"""Small-sample intervals and tests of rank correlations against independent truths.

- Coverage by Monte Carlo (a fresh seed, not the belt's): 400 bivariate-normal samples of 8 and of 12 runs at true
  Spearman ρ = 0.9 and Kendall τ = 0.5; the 95 % interval must cover the truth in 91–99 % of them (binomial sd of
  the share at 400 draws is 1.1 %, so ±4 points is ±3.6 sd around 95 %).
- The p-value of "no association" for 6 runs against the exact permutation distribution (all 720 orderings):
  within 0.03 (Monte-Carlo sd of a share from 2,000 draws is ≤ 0.011).
- Above 50 runs: Fisher's z by hand (1e-12).
- The level-versus-rest permutation test holds its level: 300 pairs of groups of 8 with the same relation
  (Gaussian, ρ ≈ 0.9, where perfect rank agreement is common) reject at 5 % in at most 8 % (sd 1.3 %).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from analyze.stats.level_tests import Side, centred_ranks, difference_pvalues
from analyze.stats.rank_intervals import BELT_MAX_N, excludes_zero, rank_interval, rank_pvalue


def _gaussian(rng: np.random.Generator, n: int, r: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal(n)
    return x, r * x + np.sqrt(1 - r * r) * rng.standard_normal(n)


@pytest.mark.parametrize("n", [8, 12])
@pytest.mark.parametrize("kind,truth", [("spearman", 0.9), ("kendall", 0.5)])
def test_belt_covers_the_truth(n: int, kind: str, truth: float) -> None:
    r = 2 * np.sin(np.pi * truth / 6) if kind == "spearman" else np.sin(np.pi * truth / 2)
    rng = np.random.default_rng(123)
    covered = 0
    for _ in range(400):
        x, y = _gaussian(rng, n, r)
        est = stats.spearmanr(x, y).statistic if kind == "spearman" else stats.kendalltau(x, y).statistic
        lo, hi = rank_interval(est, n, 0.95, kind)
        covered += lo <= truth <= hi
    assert 0.91 <= covered / 400 <= 0.99


def test_perfect_agreement_in_eight_runs_is_not_a_point_interval() -> None:
    lo, hi = rank_interval(1.0, 8, 0.95)
    assert hi == 1.0 and lo < 0.95 and f"[{lo:.2f}, {hi:.2f}]" != "[1.00, 1.00]"
    lo, hi = rank_interval(-1.0, 8, 0.95, "kendall")
    assert lo == -1.0 and hi > -0.9
    assert excludes_zero((lo, hi)) == -1 and excludes_zero(rank_interval(0.1, 8)) == 0


def test_pvalue_of_no_association_matches_the_exact_permutation_distribution() -> None:
    n = 6
    ranks = np.arange(n)
    perms = np.array(list(itertools.permutations(ranks)))
    rho = 1 - 6 * ((perms - ranks) ** 2).sum(axis=1) / (n * (n * n - 1))
    for observed in (0.6, 0.83, 1.0):
        exact = float((np.abs(rho) >= observed - 1e-12).mean())
        assert rank_pvalue(observed, n) == pytest.approx(exact, abs=0.03)


def test_large_groups_use_fisher_z() -> None:
    n = BELT_MAX_N + 11
    half = stats.norm.ppf(0.975) * np.sqrt(1.06 / (n - 3))
    assert rank_interval(0.4, n) == pytest.approx((np.tanh(np.arctanh(0.4) - half), np.tanh(np.arctanh(0.4) + half)), rel=1e-12)
    t = 0.4 * np.sqrt((n - 2) / (1 - 0.16))
    assert rank_pvalue(0.4, n) == pytest.approx(2 * stats.t.sf(t, n - 2), rel=1e-12)
    assert np.isfinite(rank_interval(1.0, n)).all()


def test_level_versus_rest_permutation_test_holds_its_level_in_groups_of_eight() -> None:
    rng = np.random.default_rng(99)
    rejections = 0
    draws = 300
    for _ in range(draws):
        x1, y1 = _gaussian(rng, 8, 0.9)
        x2, y2 = _gaussian(rng, 8, 0.9)
        codes = np.repeat([0, 1], 8)
        x, y = np.r_[x1, x2 + 3.0], np.r_[y1, y2 - 1.0]  # level means differ: only the relation matters
        cx, cy = centred_ranks(x, codes), centred_ranks(y, codes)
        p_signed, p_strength = difference_pvalues(Side(cx[:8], cy[:8], 1), Side(cx[8:], cy[8:], 1), rng, 499)
        rejections += min(p_signed, p_strength) < 0.025  # both statistics at 2.5 %: the family at ≤ 5 %
    assert rejections / draws <= 0.08


def test_small_pvalues_are_resolved_beyond_the_first_draws() -> None:
    # a perfect agreement in 8 runs: beyond all 2,000 null draws, so the tail is the t approximation bounded by 2/8!
    assert 2 / 40320 <= rank_pvalue(1.0, 8) < 1 / 2001
    # a strong difference between two groups of 20: more permutations are drawn until the p is resolved
    rng = np.random.default_rng(1)
    x1, y1 = _gaussian(rng, 20, 0.99)
    x2, y2 = _gaussian(rng, 20, -0.99)
    codes = np.repeat([0, 1], 20)
    cx, cy = centred_ranks(np.r_[x1, x2], codes), centred_ranks(np.r_[y1, y2], codes)
    p_signed, _ = difference_pvalues(Side(cx[:20], cy[:20], 1), Side(cx[20:], cy[20:], 1), rng)
    assert p_signed < 1 / 2000
