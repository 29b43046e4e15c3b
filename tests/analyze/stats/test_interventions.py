"""Interventions as the spec defined them: a zipped group of axes is ONE intervention in every statistic."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from analyze.stats import StatsError, break_flags, conditional_mutual_information, granulated_kendall, sign_error
from analyze.stats.interventions import alias_notes, interventions, tagged_groups

ZIP = json.dumps([["hp.batch_size"], ["hp.optimizer", "hp.lr"]])


def _zipped(tag: str | None = ZIP, n_seeds: int = 12, seed: int = 0) -> pl.DataFrame:
    """(optimizer, lr) moved together: (sgd, 0.1) and (adam, 0.001); batch size crossed with it; 3 batch sizes.

    The measure tracks the gap under SGD and is mirrored under Adam (a planted reversal along optimizer+lr)."""
    rng = np.random.default_rng(seed)
    rows = []
    for opt, lr in (("sgd", 0.1), ("adam", 0.001)):
        for bs in (32, 128, 512):
            for s in range(n_seeds):
                gap = 0.05 + 0.02 * (bs == 512) + rng.normal(0, 0.01)
                m = gap if opt == "sgd" else 2 * (0.05 + 0.02 / 3) - gap  # mirrored about the mean: no shift
                rows.append({"status": "FINISHED", "seed": s, "hp.optimizer": opt, "hp.lr": lr, "hp.batch_size": bs,
                             "hp.n_test": 10_000, "measure.m": m + rng.normal(0, 0.002), "gen.gap_acc": gap})
    frame = pl.DataFrame(rows)
    return frame if tag is None else frame.with_columns(pl.lit(tag).alias("tag.interventions"))


def test_groups_come_from_the_tag_else_one_per_column() -> None:
    assert [i.axes for i in interventions(_zipped())] == [("hp.optimizer", "hp.lr"), ("hp.batch_size",)]
    assert [i.label for i in interventions(_zipped())] == ["optimizer+lr", "batch_size"]
    # without the tag, optimizer and lr still determine each other in the ledger: one intervention, with a warning
    assert [i.axes for i in interventions(_zipped(tag=None))] == [("hp.optimizer", "hp.lr"), ("hp.batch_size",)]
    (warning,) = alias_notes(_zipped(tag=None))
    assert "hp.optimizer, hp.lr determine each other" in warning and "optimizer+lr" in warning
    assert alias_notes(_zipped()) == []  # declared together by the spec: nothing to warn about
    # naming one column of a group with --group-by analyses the whole group
    assert [i.axes for i in interventions(_zipped(), ["optimizer"])] == [("hp.optimizer", "hp.lr")]
    # overlapping groups of different runs merge; a bad tag is a clear error
    frame = _zipped().with_columns(pl.Series("tag.interventions", [ZIP] * 36 + ['[["hp.lr", "hp.batch_size"]]'] * 36))
    assert tagged_groups(frame) == [("hp.batch_size", "hp.lr", "hp.optimizer")]
    with pytest.raises(StatsError, match="tag.interventions"):
        interventions(_zipped(tag="optimizer+lr"))


def test_zipped_axes_are_flagged_once() -> None:
    flags = break_flags(_zipped(), min_group=8)
    assert flags.select("flag", "axis", "group", "reference").rows() == [
        ("sign_reversal", "hp.optimizer+hp.lr", "adam, 0.001", "sgd, 0.1")]
    assert "hp.optimizer=adam, hp.lr=0.001" in flags["sentence"][0]
    # without the tag the aliased columns are still one intervention, flagged once, at the right joint level
    untagged = break_flags(_zipped(tag=None), min_group=8)
    assert untagged.select("flag", "axis", "group").rows() == [("sign_reversal", "hp.optimizer+hp.lr", "adam, 0.001")]


def test_psi_is_defined_for_a_zipped_group() -> None:
    out = granulated_kendall(_zipped(), min_configs=2, min_cells=3)  # 3 cells: one per batch size
    psi = dict(zip(out["axis"], out["psi"]))
    assert set(psi) == {"hp.optimizer+hp.lr", "hp.batch_size", "ALL"}
    # cells (one per batch size) hold the two (optimizer, lr) levels; psi is defined (it was null per column)
    assert psi["hp.optimizer+hp.lr"] is not None
    untagged = granulated_kendall(_zipped(tag=None), min_configs=2, min_cells=3)
    assert set(untagged["axis"]) == {"hp.optimizer+hp.lr", "hp.batch_size", "ALL"}


def test_sign_error_environments_and_cmi_conditioning_use_the_group() -> None:
    se = sign_error(_zipped(), min_ess=1)
    row = se.filter(pl.col("axis") == "hp.optimizer+hp.lr").row(0, named=True)
    assert row["n_envs"] == 3  # one pair of (optimizer, lr) levels per batch size
    untagged = sign_error(_zipped(tag=None), min_ess=1)
    assert untagged.filter(pl.col("axis") == "hp.optimizer+hp.lr")["n_envs"][0] == 3
    cmi = conditional_mutual_information(_zipped())
    assert cmi["conditioning"][0] == "hp.optimizer+hp.lr,hp.batch_size" and cmi["n_sets"][0] == 1


def test_empty_sign_error_says_why_and_what_fixes_it() -> None:
    one_seed = _zipped(n_seeds=1)
    row = sign_error(one_seed).filter(pl.col("axis") == "hp.batch_size").row(0, named=True)
    assert row["mean"] is None and row["reason"] == "ess_below_min" and row["max_ess"] <= 1.0
    assert row["seeds_per_config"] == 1 and "4 seeds" in row["fix"] and "--min-ess" in row["fix"]
    # four configurations, each pair differing in two of three columns (none aliased): no environment anywhere
    corners = pl.DataFrame({"hp.x": [0, 1, 1, 0], "hp.y": [0, 1, 0, 1], "hp.z": [0, 0, 1, 1], "gen.gap_acc": [0.1, 0.2, 0.3, 0.4],
                            "measure.m": [1.0, 2.0, 3.0, 4.0]})
    none = sign_error(corners, hoeffding=False)
    assert none.filter(pl.col("axis") == "hp.x")["reason"][0] == "no_environments"


def test_the_run_label_tag_is_not_a_second_intervention_when_groups_are_declared() -> None:
    frame = _zipped().with_columns(
        (pl.lit("optim.optimizer=") + pl.col("hp.optimizer") + pl.lit(", batch=") + pl.col("hp.batch_size").cast(pl.Utf8))
        .alias("tag.intervention"))
    assert "tag.intervention" not in set(break_flags(frame, min_group=8)["axis"])
    from analyze.stats.flags import flag_interventions

    legacy = flag_interventions(frame.drop("tag.interventions"), None)  # an old ledger: the label is an intervention
    assert "tag.intervention" in {iv.name for iv in legacy}
