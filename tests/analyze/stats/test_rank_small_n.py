"""The ranking's intervals at small n: never a point interval such as [1.00, 1.00] (a bootstrap of 8 runs whose
ranks agree perfectly resamples ρ = 1 every time), and never narrower than the flags' Neyman belt
(``rank_intervals``) or than the bootstrap itself (``correlations.belt_hull``)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from analyze.stats import correlations, report_frames
from analyze.stats.correlations import belt_hull
from analyze.stats.rank_intervals import rank_interval


def _perfect(n: int) -> pl.DataFrame:
    rng = np.random.default_rng(1)
    gap = np.sort(rng.normal(0.1, 0.02, n))
    return pl.DataFrame({"run_id": [f"r{i}" for i in range(n)], "status": ["FINISHED"] * n,
                         "hp.lr": [0.1, 0.2] * (n // 2), "gen.gap_acc": gap,
                         "measure.sharpness": 3 * gap + np.linspace(0, 1e-3, n)})  # same order: ρ = τ = 1


def test_perfect_rank_agreement_in_8_runs_gives_the_belt_interval() -> None:
    row = correlations(_perfect(8), targets=["gen.gap_acc"], resamples=200).row(0, named=True)
    assert row["spearman_rho"] == pytest.approx(1.0) and row["kendall_tau"] == pytest.approx(1.0)
    for kind, coef in (("spearman", "spearman_rho"), ("kendall", "kendall_tau")):
        lo, hi = row[f"{kind}_ci_low"], row[f"{kind}_ci_high"]
        belt = rank_interval(row[coef], 8, 0.95, kind)
        assert hi == pytest.approx(1.0) and lo <= belt[0] < 0.95  # at ρ = 1 with 8 runs the belt reads about [0.89, 1.00]
    frames, _ = report_frames(_perfect(8), resamples=200, min_group=4)
    text = " ".join(frames["verdict_sentences"]["sentence"])
    lo = frames["rank"]["kendall_ci_low"][0]
    assert f"τ = +1.00 [{lo:.2f}, 1.00]" in text and lo < 0.95 and "[1.00, 1.00]" not in text


def test_hull_keeps_the_wider_side_of_each_and_ignores_missing_bounds() -> None:
    assert belt_hull((0.1, 0.5), (0.2, 0.6)) == (0.1, 0.6)
    assert belt_hull((float("nan"), float("nan")), (0.2, 0.6)) == (0.2, 0.6)
    assert belt_hull((1.0, 1.0), (0.89, 1.0)) == (0.89, 1.0)
