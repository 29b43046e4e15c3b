"""Awkward ledgers give a clear result or a clear error: no hp.* columns, a single-run group, all-missing values."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from analyze.stats import (
    StatsError,
    break_flags,
    conditional_mutual_information,
    correlations,
    granulated_kendall,
    rank_measures,
    report_frames,
    sign_error,
)
from tests.analyze.synthetic import synthetic_ledger


def _no_hp() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    gap = rng.normal(size=30)
    return pl.DataFrame({"status": ["FINISHED"] * 30, "gen.gap_acc": gap, "measure.m": gap + rng.normal(size=30)})


@pytest.mark.parametrize("fn", [granulated_kendall, sign_error, conditional_mutual_information])
def test_no_hp_columns_errors_name_the_fix(fn) -> None:
    with pytest.raises(StatsError, match="hp"):
        fn(_no_hp())


def test_no_hp_columns_still_ranks_and_the_report_explains_what_it_left_out() -> None:
    assert rank_measures(_no_hp(), target="gen.gap_acc").height == 1
    frames, notes = report_frames(_no_hp(), resamples=0)
    assert {"rank", "correlations"} <= set(frames) and "granulated" not in frames
    assert any(n.startswith("granulated:") for n in notes) and any(n.startswith("flags:") for n in notes)
    assert "kendall_p_adj" in frames["rank"].columns


def test_single_run_group_is_reported_as_too_small() -> None:
    frame = synthetic_ledger(seed=0, break_group=None)
    lone = frame.head(1).with_columns(pl.lit("rmsprop").alias("hp.optimizer"), pl.lit("lone").alias("run_id"))
    flags = break_flags(pl.concat([frame, lone]))
    small = flags.filter((pl.col("flag") == "too_small") & (pl.col("group") == "rmsprop"))
    assert small.height == 3 and small["n_group"].to_list() == [1, 1, 1]


def test_all_values_missing_for_a_measure() -> None:
    frame = synthetic_ledger(seed=0).with_columns(pl.lit(None, dtype=pl.Float64).alias("measure.empty"))
    row = correlations(frame, targets="gen.gap_acc").filter(pl.col("measure") == "measure.empty").row(0, named=True)
    assert row["n"] == 0 and "only 0" in row["note"]
    g = granulated_kendall(frame, measures=["measure.empty"])
    assert g["psi"].null_count() == g.height
    cmi = conditional_mutual_information(frame, measures=["measure.empty"])
    assert cmi["cmi"][0] is None and "fewer than 2" in cmi["note"][0]
