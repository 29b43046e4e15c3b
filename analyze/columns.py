"""Ledger column conventions (design page): one row per run, prefixed columns.

``run_id``, ``experiment``, ``seed``, ``status``; ``hp.<name>`` hyperparameters; ``measure.<name>`` measures (raw);
``gen.<target>`` generalization numbers; ``diag.<name>`` diagnostics of a measure (standard error, HVP count,
convergence; never ranked as measures); ``time.<measure>`` seconds; ``tag.<name>`` free tags.
"""

from __future__ import annotations

from typing import Iterable

HP, MEASURE, GEN, TIME, TAG = "hp.", "measure.", "gen.", "time.", "tag."
DIAG = "diag."
ID_COLUMNS = ("run_id", "experiment", "seed", "status")

# Sign of "worse generalization" for each target: a larger gap or test loss is worse, a larger test accuracy better.
TARGET_BADNESS: dict[str, int] = {
    "gen.gap_acc": +1,
    "gen.gap_loss": +1,
    "gen.test_loss": +1,
    "gen.test_err": +1,
    "gen.test_acc": -1,
}
DEFAULT_TARGET = "gen.gap_acc"
DEFAULT_TARGETS = ("gen.test_acc", "gen.test_loss", "gen.gap_acc", "gen.gap_loss")


def with_prefix(columns: Iterable[str], prefix: str) -> list[str]:
    return [c for c in columns if c.startswith(prefix)]


def measure_columns(columns: Iterable[str]) -> list[str]:
    return with_prefix(columns, MEASURE)


def hp_columns(columns: Iterable[str]) -> list[str]:
    return with_prefix(columns, HP)


def target_badness(target: str) -> int:
    """+1 if larger values of ``target`` mean worse generalization, -1 if better; 0 when unknown."""
    return TARGET_BADNESS.get(target, 0)
