"""reports/reproduction_verdicts.py: its noise convention against scipy's t-test and a Monte-Carlo null of Kendall τ."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

SCRIPT = Path(__file__).resolve().parents[1] / "reports" / "reproduction_verdicts.py"


@pytest.fixture(scope="module")
def verdicts():
    spec = importlib.util.spec_from_file_location("reproduction_verdicts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_groups_is_the_pooled_t_test_when_the_seed_spread_dominates(verdicts) -> None:
    a, b = [1.0, 1.4, 0.7, 1.2], [0.2, 0.5, -0.1]
    diff, se, df = verdicts.two_groups(a, b)
    t = stats.ttest_ind(a, b, equal_var=True)
    assert df == len(a) + len(b) - 2
    assert diff / se == pytest.approx(t.statistic, rel=1e-12)  # same estimator, so agreement to rounding


def test_two_groups_uses_the_binomial_noise_when_it_is_larger(verdicts) -> None:
    a, b = [0.90, 0.901], [0.89, 0.891]  # seed spread ~ 1e-3, binomial √(p(1−p)/100) ~ 0.03
    diff, se, df = verdicts.two_groups(a, b, n_test=100)
    p = np.mean(a + b)
    assert se == pytest.approx(math.sqrt(p * (1 - p) / 100 * (1 / 2 + 1 / 2)), rel=1e-12)
    assert df == 2  # the degrees of freedom stay those of the seed spread (analyze.stats.power's convention)
    one, se1, df1 = verdicts.two_groups([0.9], [0.89], n_test=100)
    assert math.isinf(df1) and one == pytest.approx(0.01)


def test_kendall_se_matches_the_monte_carlo_null(verdicts) -> None:
    rng = np.random.default_rng(0)
    n = 10
    x = np.arange(n)
    taus = [stats.kendalltau(x, rng.permutation(n))[0] for _ in range(4000)]
    _, se, _, _ = verdicts.kendall(x, rng.permutation(n))
    # 4,000 draws: the sample sd has relative standard error ≈ 1/√(2·4000) ≈ 1.1 %, so 5 % is ~4.5 standard errors
    assert np.std(taus) == pytest.approx(se, rel=0.05)


def test_sign_only_claims(verdicts) -> None:
    assert verdicts.verdict(2.0, 0.5, math.inf, None, +1) == "reproduced"
    assert verdicts.verdict(-2.0, 0.5, math.inf, None, +1) == "not reproduced"
    assert verdicts.verdict(0.1, 0.5, math.inf, None, +1).startswith("undecided (design too weak: detectable effect 1.4")


def test_one_group_is_scipys_one_sample_t_test(verdicts) -> None:
    a = [0.91, 0.87, 0.95, 0.89]
    diff, se, df = verdicts.one_group(a, 0.8)
    t = stats.ttest_1samp(a, 0.8)
    assert df == 3 and diff / se == pytest.approx(t.statistic, rel=1e-12)
    with pytest.raises(ValueError, match="one run"):
        verdicts.one_group([0.9], 0.8)


def test_equivalence_is_statsmodels_tost(verdicts) -> None:
    """The two-sided rule is TOST: reproduced exactly when statsmodels' ttost_ind rejects at 5 %."""
    from statsmodels.stats.weightstats import ttost_ind

    rng = np.random.default_rng(1)
    for shift in (0.0, 0.004, 0.012, 0.03):
        a, b = rng.normal(0.9 + shift, 0.004, 5), rng.normal(0.9, 0.004, 5)
        diff, se, df = verdicts.two_groups(a, b)
        p_tost = ttost_ind(a, b, -0.01, 0.01, usevar="pooled")[0]
        assert verdicts.equivalence(diff, se, df, 0.01).startswith("reproduced") == (p_tost < 0.05)


def test_equivalence_one_sided_and_refuted(verdicts) -> None:
    assert verdicts.equivalence(0.001, 0.002, math.inf, 0.01, side=+1).startswith("reproduced (the one-sided 95 % bound is below")
    assert verdicts.equivalence(0.05, 0.005, math.inf, 0.01, side=+1).startswith("not reproduced")
    assert verdicts.equivalence(-0.3, 0.02, math.inf, 0.14, side=-1).startswith("not reproduced")
    assert verdicts.equivalence(0.0, 0.2, math.inf, 0.14, side=0).startswith("undecided")
