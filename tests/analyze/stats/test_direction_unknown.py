"""The "direction unknown" verdict sentence calls a τ significant when the interval shown excludes 0 (the rule of
every other verdict word), never by a p-value that disagrees with that interval."""

from __future__ import annotations

import polars as pl

from analyze.stats.ranking import tau_significant
from analyze.stats.suite import direction_unknown_sentence


def _rank(ci_low: list, ci_high: list, p: list) -> pl.DataFrame:
    k = len(p)
    return pl.DataFrame({"measure": [f"measure.m{i}" for i in range(k)], "kendall_tau": [0.2] * k, "kendall_p": p,
                         "kendall_ci_low": ci_low, "kendall_ci_high": ci_high, "direction": ["unknown"] * k},
                        schema_overrides={"kendall_ci_low": pl.Float64, "kendall_ci_high": pl.Float64})


def test_the_interval_decides_not_the_p_value() -> None:
    # m0: p = 1e-6 (significant after any correction) but its CI contains 0; m1: p = 0.3 but its CI excludes 0
    text = direction_unknown_sentence(_rank([-0.01, 0.02], [0.4, 0.4], [1e-6, 0.3]), target="gen.x", alpha=0.05)
    assert text is not None and "m1 (τ = +0.20)" in text and "m0" not in text
    assert "interval of Kendall τ excludes 0" in text and "pass --target-better" in text  # gen.x has no orientation
    assert direction_unknown_sentence(_rank([-0.01], [0.4], [1e-6]), target="gen.x", alpha=0.05) is None


def test_without_an_interval_the_p_value_decides() -> None:
    text = direction_unknown_sentence(_rank([None, None], [None, None], [0.01, 0.2]), target="gen.x", alpha=0.05)
    assert text is not None and "m0" in text and "m1" not in text
    assert tau_significant(None, None, 0.049, 0.05) and not tau_significant(None, None, 0.051, 0.05)
    assert tau_significant(-0.3, -0.01, 0.9, 0.05) and not tau_significant(-0.3, 0.0, 0.0, 0.05)
