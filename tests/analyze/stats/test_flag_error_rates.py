"""The break flags hold their error rate: few false flags on null ledgers, and planted breaks are found.

30 null ledgers of each kind (``tests.analyze.synthetic.null_ledger``: pure noise; gap independent of the
hyperparameters; gap additive in every axis — every level has the same measure–gap relationship, so any flag other
than ``too_small`` is false) with groups of 8, 12 and 40 runs per level: the share of ledgers with any such flag must
be ≤ 10 %. 30 planted ledgers of each kind with groups of 40 (``planted_ledger``: a reversal within one optimizer, a
Simpson construction, a weakening within a non-reference level, the same weakening inside the reference level): the
planted flag must be found in ≥ 95 % of them. Seeds are fixed, so the test is deterministic. The rates at more
ledgers and every group size: ``python tests/benchmarks/bench_flag_error_rates.py``.
"""

from __future__ import annotations

import polars as pl
import pytest

from analyze.stats import break_flags
from tests.analyze.synthetic import NULL_KINDS, PLANTED_KINDS, null_ledger, planted_ledger, synthetic_ledger

N_LEDGERS = 30
SEEDS_PER_GROUP = {8: 2, 12: 3, 40: 10}  # runs per level = 4 configurations × seeds


def null_share(kind: str, seeds: range, n_seeds: int = 10) -> float:
    """Share of null ledgers with any flag other than too_small."""
    return sum(break_flags(null_ledger(kind, s, n_seeds=n_seeds)).filter(pl.col("flag") != "too_small").height > 0
               for s in seeds) / len(seeds)


def detection_share(kind: str, seeds: range, n_seeds: int = 10) -> float:
    """Share of planted ledgers in which the planted (flag, axis, group) of measure.planted is raised."""
    found = 0
    for s in seeds:
        ledger, (flag, axis, group) = planted_ledger(kind, s, n_seeds=n_seeds)
        flags = break_flags(ledger)
        found += flags.filter((pl.col("flag") == flag) & (pl.col("axis") == axis) & (pl.col("group") == group)
                              & (pl.col("measure") == "measure.planted")).height > 0
    return found / len(seeds)


@pytest.mark.parametrize("group", sorted(SEEDS_PER_GROUP))
@pytest.mark.parametrize("kind", NULL_KINDS)
def test_null_ledgers_raise_few_flags(kind: str, group: int) -> None:
    assert null_share(kind, range(N_LEDGERS), SEEDS_PER_GROUP[group]) <= 0.10


def test_null_ledgers_with_a_three_level_axis_and_near_perfect_relations_raise_few_flags() -> None:
    # synthetic_ledger without a break: four axes (lr with 3 levels) all moving the gap additively, the measure the gap
    # plus small noise (ρ ≈ 0.99 in every level, where Fisher's z with the 1.06 variance would call 0.99 vs 0.997 a break)
    false = sum(break_flags(synthetic_ledger(seed=s, break_group=None, n_seeds=5)).filter(pl.col("flag") != "too_small").height > 0
                for s in range(N_LEDGERS))
    assert false / N_LEDGERS <= 0.10


@pytest.mark.parametrize("kind", PLANTED_KINDS)
def test_planted_breaks_are_found(kind: str) -> None:
    assert detection_share(kind, range(1000, 1000 + N_LEDGERS), SEEDS_PER_GROUP[40]) >= 0.95
