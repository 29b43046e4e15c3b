"""Per-sample analysis: Pearson r on correctly classified points, with and without LocalOutlierFactor."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from analyze.stats import StatsError, lof_inliers, per_sample_correlations


def _frame(n: int = 200, seed: int = 0, step: int | None = None) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    aceht = rng.gamma(2.0, 1.0, n)
    trace = aceht + rng.normal(0, 0.2, n)
    trace[0] = 60.0  # one wild point: LOF must drop it and r must rise
    correct = rng.random(n) > 0.1
    correct[0] = True
    data = {"trace": trace, "aceht": aceht, "margin_bound": aceht * 1.5 + rng.normal(0, 0.5, n), "correct": correct}
    if step is not None:
        data["step"] = [step] * n
    return pl.DataFrame(data)


def test_pearson_on_correct_points_and_lof_removal() -> None:
    frame = _frame()
    out = per_sample_correlations({"run1": frame})
    row = out.filter(pl.col("versus") == "aceht").row(0, named=True)
    ok = frame.filter(pl.col("correct"))
    ref = stats.pearsonr(ok["trace"].to_numpy(), ok["aceht"].to_numpy())
    assert row["n_correct"] == ok.height
    assert row["pearson_r"] == pytest.approx(ref.statistic, abs=1e-12)
    keep = lof_inliers(ok.select("trace", "aceht").to_numpy())
    assert not keep[0]  # the planted outlier
    ref_lof = stats.pearsonr(ok["trace"].to_numpy()[keep], ok["aceht"].to_numpy()[keep])
    assert row["pearson_r_lof"] == pytest.approx(ref_lof.statistic, abs=1e-12)
    assert row["n_outliers"] == int((~keep).sum()) and row["pearson_r_lof"] > row["pearson_r"]
    assert set(out["versus"]) == {"aceht", "margin_bound"}


def test_steps_along_training_and_bad_artifacts() -> None:
    curve = pl.concat([_frame(step=s, seed=s) for s in (0, 100)])
    out = per_sample_correlations({"r": curve}, lof=False)
    assert sorted(out["step"].unique().to_list()) == [0, 100] and out["pearson_r_lof"].null_count() == out.height
    with pytest.raises(StatsError, match="trace"):
        per_sample_correlations({"r": pl.DataFrame({"aceht": [1.0]})})
    tiny = per_sample_correlations({"r": _frame().head(2)})
    assert tiny["pearson_r"][0] is None and "undefined" in tiny["note"][0]
