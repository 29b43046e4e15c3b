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

# Sign of "worse generalization" for each known target: a larger gap, error or test loss is worse, a larger test
# accuracy better. Other ``gen.*`` names follow ``orientation_by_name``; ``gen.train_*`` describe the fit, not
# generalization, and have no orientation unless the user gives one (``--target-better``).
TARGET_BADNESS: dict[str, int] = {
    "gen.gap": +1,
    "gen.gap_acc": +1,
    "gen.gap_loss": +1,
    "gen.test_loss": +1,
    "gen.test_err": +1,
    "gen.test_acc": -1,
}
BETTER = {"lower": +1, "higher": -1}  # --target-better: the badness of a target whose lower/higher values are better
DEFAULT_TARGET = "gen.gap_acc"
DEFAULT_TARGETS = ("gen.test_acc", "gen.test_loss", "gen.gap_acc", "gen.gap_loss")


def with_prefix(columns: Iterable[str], prefix: str) -> list[str]:
    return [c for c in columns if c.startswith(prefix)]


def measure_columns(columns: Iterable[str]) -> list[str]:
    return with_prefix(columns, MEASURE)


def hp_columns(columns: Iterable[str]) -> list[str]:
    return with_prefix(columns, HP)


def orientation_by_name(target: str) -> int:
    """The documented rule for a ``gen.*`` column outside ``TARGET_BADNESS`` (0 when it does not apply).

    badness = 0 for ``gen.train_*`` (a fit, not generalization); else +1 when the name (after ``gen.``) starts with
    ``gap`` or ends with ``_loss``, ``_err``, ``_error`` or ``_gap``; −1 when it ends with ``_acc`` or ``_accuracy``.
    """
    name = target.removeprefix(GEN)
    if not target.startswith(GEN) or name.startswith("train_"):
        return 0
    if name.startswith("gap") or name.endswith(("_loss", "_err", "_error", "_gap")):
        return +1
    if name.endswith(("_acc", "_accuracy")):
        return -1
    return 0


def target_badness(target: str, better: str | None = None) -> int:
    """+1 if larger values of ``target`` mean worse generalization, −1 if better; 0 when unknown.

    ``better`` ("lower" | "higher", the CLI's ``--target-better``) sets it: badness = +1 when lower is better,
    −1 when higher is; without it, ``TARGET_BADNESS``, then ``orientation_by_name``.
    """
    if better is not None:
        if better not in BETTER:
            raise ValueError(f"better must be one of {sorted(BETTER)}, not {better!r}")
        return BETTER[better]
    return TARGET_BADNESS.get(target, orientation_by_name(target))
