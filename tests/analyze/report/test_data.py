"""Shaping rows for charts: log-axis choice, seeded sampling, colour groupings, axis titles with units."""

from __future__ import annotations

import polars as pl

from analyze.report.data import groupings, group_labels, label, sample, spans_decades


def test_spans_decades_needs_positive_values_over_two_decades() -> None:
    assert spans_decades(pl.Series([1.0, 50.0, 100.0]))
    assert not spans_decades(pl.Series([1.0, 99.0]))
    assert not spans_decades(pl.Series([-1.0, 1000.0]))  # a log axis cannot show a non-positive value
    assert not spans_decades(pl.Series([0.0, 1000.0]))
    assert not spans_decades(pl.Series([5.0]))


def test_sample_is_seeded_ordered_and_says_so() -> None:
    frame = pl.DataFrame({"i": list(range(1000))})
    same, note = sample(frame, 1000)
    assert same.height == 1000 and note == ""
    a, note = sample(frame, 100, seed=3)
    b, _ = sample(frame, 100, seed=3)
    assert a.height == 100 and a.equals(b)
    assert a["i"].is_sorted()  # original order kept
    assert a["i"].n_unique() == 100
    assert "100 of 1,000" in note and "seed 3" in note


def test_groupings_put_intervention_first_then_axes_with_fewest_values() -> None:
    frame = pl.DataFrame(
        {
            "hp.lr": [0.1, 0.2, 0.3, 0.1],
            "hp.batch_size": [32, 64, 32, 64],
            "hp.seedless": [1, 1, 1, 1],  # does not vary: not a grouping
            "hp.many": list(range(4)),
            "tag.intervention": ["a", "b", "a", "b"],
        }
    )
    got = [g.column for g in groupings(frame, max_levels=3)]
    assert got == ["tag.intervention", "hp.batch_size", "hp.lr"]  # hp.many has 4 > 3 values
    labels = group_labels(frame, groupings(frame)[1]).to_list()
    assert labels == ["batch_size=32", "batch_size=64", "batch_size=32", "batch_size=64"]


def test_labels_carry_units() -> None:
    assert "fraction" in label("gen.gap_acc")
    assert label("time.hessian_trace") == "hessian_trace (seconds)"
    assert label("hp.lr") == "learning rate η"
    assert label("measure.margin_q10") == "margin_q10 (logit units)"
    assert label("measure.margin_skew") == "margin_skew"  # skewness has no unit
    assert label("measure.unknown_thing") == "unknown_thing"
