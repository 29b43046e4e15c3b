"""Conditional mutual information: sorted pair counting against enumeration, and a worked example."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from analyze.stats import StatsError, conditional_mutual_information
from analyze.stats.cmi import cmi_from_table, pair_tables


@pytest.mark.parametrize("max_tied", [2_000_000, 0])  # ties enumerated, or counted by a second sorted pass
def test_pair_tables_equal_enumeration_of_ordered_pairs(max_tied: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyze.stats import cmi

    monkeypatch.setattr(cmi, "_MAX_TIED_PAIRS", max_tied)
    rng = np.random.default_rng(0)
    n = 50
    mu = rng.integers(0, 6, n).astype(float)  # ties in the measure
    g = rng.integers(0, 8, n).astype(float)  # ties in the gap (dropped)
    groups = [rng.integers(0, 3, n), rng.integers(0, 4, n)]
    for k, table in zip(groups, pair_tables(mu, g, groups)):
        brute = np.zeros_like(table)
        for a in range(n):
            for b in range(n):
                if a != b and g[a] != g[b]:
                    brute[k[a], k[b], 1 - int(np.sign(mu[a] - mu[b])), 0 if g[a] > g[b] else 1] += 1
        assert np.array_equal(table, brute)


def _ledger(gap: list[float], m: list[float], a: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"hp.a": a, "gen.gap_acc": gap, "measure.m": m})


def test_worked_example() -> None:
    # a=0: runs (g, m) = (1, 1), (2, 3), (3, 2); a=1: (1, 5). Conditioning on the single axis a (one axis only).
    # Slice (0,0): 6 ordered pairs; unordered: two concordant, one discordant → p(V_μ, V_g) = [[2, 1], [1, 2]] / 6,
    # uniform marginals: I = 2·(1/3)·log2(4/3) + 2·(1/6)·log2(2/3), H(V_g) = 1.
    # Slices (0,1) and (1,0): the pair with r1 ties in g (dropped); the two others all fall in one cell → I = H = 0.
    # So CMI = (6/10 · I) / (6/10 · 1) = I.
    out = conditional_mutual_information(_ledger([1, 2, 3, 1], [1, 3, 2, 5], [0, 0, 0, 1]), min_pairs_per_slice=0)
    expected = (2 / 3) * math.log2(4 / 3) + (1 / 3) * math.log2(2 / 3)
    row = out.row(0, named=True)
    assert row["cmi"] == pytest.approx(expected, abs=1e-12)
    assert row["conditioning"] == "hp.a" and row["n_pairs"] == 10


def test_perfect_and_uninformative_measures() -> None:
    rng = np.random.default_rng(1)
    gap = rng.normal(size=40).tolist()
    axes = {"hp.a": rng.integers(0, 2, 40).tolist(), "hp.b": rng.integers(0, 3, 40).tolist()}
    frame = pl.DataFrame({**axes, "gen.gap_acc": gap, "measure.same": gap, "measure.const": [1.0] * 40})
    out = dict(zip(*conditional_mutual_information(frame).select("measure", "cmi").to_dict(as_series=False).values()))
    assert out["measure.same"] == pytest.approx(1.0, abs=1e-12)
    assert out["measure.const"] == pytest.approx(0.0, abs=1e-12)


def test_table_without_gap_variation_is_undefined_and_no_axes_is_an_error() -> None:
    assert math.isnan(cmi_from_table(np.zeros((1, 1, 3, 2))))
    with pytest.raises(StatsError, match="no hp"):
        conditional_mutual_information(pl.DataFrame({"gen.gap_acc": [1.0, 2.0], "measure.m": [1.0, 2.0]}))


def test_too_few_runs_give_no_score_but_a_note() -> None:
    # 8 runs over two two-level axes: 56 ordered pairs in 16 slices, 3.5 per slice; a CMI from them is plug-in bias
    rng = np.random.default_rng(3)
    frame = pl.DataFrame({"hp.a": [0, 1] * 4, "hp.b": [0, 0, 1, 1] * 2, "gen.gap_acc": rng.normal(size=8),
                          "measure.m": rng.normal(size=8)})
    row = conditional_mutual_information(frame).row(0, named=True)
    assert row["cmi"] is None and "too few runs: 8 runs" in row["note"] and "fewer than 20" in row["note"]
    raw = conditional_mutual_information(frame, min_pairs_per_slice=0).row(0, named=True)
    assert raw["cmi"] is not None  # the number exists; it is withheld because it cannot mean anything
