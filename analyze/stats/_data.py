"""Shared plumbing for the statistics: which rows and columns enter, as numpy arrays, with clear errors.

Only FINISHED runs enter any statistic (a ledger without a ``status`` column is taken as all finished); missing
values (null, NaN, ±inf) are dropped per analysis and the number of runs used is reported next to every number.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import polars as pl

from analyze.columns import DEFAULT_TARGETS, DIAG, GEN, HP, MEASURE, hp_columns, measure_columns, target_badness
from analyze.public_ledger import registry_key
from collect.catalog import expected_direction, output_kind


class StatsError(ValueError):
    """A statistic cannot be computed from this ledger; the message names the column or option and the fix."""


def finished_runs(ledger: pl.DataFrame) -> pl.DataFrame:
    """FINISHED runs only (failed, killed and running runs never enter a statistic)."""
    if "status" not in ledger.columns:
        return ledger
    return ledger.filter(pl.col("status") == "FINISHED")


def status_summary(ledger: pl.DataFrame) -> dict[str, int]:
    """Run counts by status, e.g. {"FINISHED": 96, "FAILED": 4}, for the report header."""
    if "status" not in ledger.columns:
        return {"FINISHED": ledger.height}
    counts = ledger.group_by("status").len()
    return {str(r["status"]): int(r["len"]) for r in counts.sort("status").iter_rows(named=True)}


def require_columns(ledger: pl.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in ledger.columns]
    if missing:
        have = ", ".join(c for c in ledger.columns if c.startswith((MEASURE, GEN, HP))) or "none"
        raise StatsError(f"{what}: column(s) {missing} not in the ledger; ledger columns are: {have}")


def pick_measures(ledger: pl.DataFrame, measures: Sequence[str] | None = None) -> list[str]:
    """The measure columns to analyse: the given ones (``hessian_trace`` or ``measure.hessian_trace``) or all.

    Only ``measure.*`` columns are measures. ``diag.*`` columns (a measure's standard error, HVP count, convergence)
    never are, and a ``measure.<key>`` column whose key the registry declares a diagnostic (a ledger file written
    before diagnostics had their own prefix) is left out too.
    """
    if measures is None:
        found = [c for c in measure_columns(ledger.columns) if _is_numeric(ledger, c) and not is_diagnostic(c)]
        if not found:
            raise StatsError("the ledger has no numeric measure.* column; nothing to correlate with generalization")
        return found
    diags = [m for m in measures if m.startswith(DIAG) or is_diagnostic(m if m.startswith(MEASURE) else MEASURE + m)]
    if diags:
        raise StatsError(f"--measures {', '.join(diags)}: a diagnostic (standard error, HVP count, convergence) is not "
                         "a measure and is never ranked or flagged; name measure.* columns")
    names = [m if m.startswith(MEASURE) else MEASURE + m for m in measures]
    require_columns(ledger, names, "--measures")
    return names


def pick_targets(ledger: pl.DataFrame, targets: Sequence[str] | str | None = None) -> list[str]:
    """Target columns (``gen.*``): the given ones, else those of the default four that the ledger has."""
    if targets is None:
        found = [t for t in DEFAULT_TARGETS if t in ledger.columns]
        if not found:
            raise StatsError(f"the ledger has none of the default targets {list(DEFAULT_TARGETS)}; pass --target gen.<name>")
        return found
    if isinstance(targets, str):
        targets = [targets]
    names = [t if t.startswith(GEN) else GEN + t for t in targets]
    require_columns(ledger, names, "--target")
    for t in names:
        if not _is_numeric(ledger, t):
            raise StatsError(f"--target {t}: column is not numeric")
    return names


def is_diagnostic(column: str) -> bool:
    """True for ``diag.*`` and for ``measure.<key>`` when the registry declares ``key`` a diagnostic output."""
    if column.startswith(DIAG):
        return True
    return column.startswith(MEASURE) and _output_kind(column.removeprefix(MEASURE)) == "diagnostic"


def _output_kind(key: str) -> str:
    """'measure', 'diagnostic', 'gen' or 'unknown' for an output key, from the torch-free ``collect.catalog``."""
    return output_kind(key)


def all_hp_columns(ledger: pl.DataFrame) -> list[str]:
    return hp_columns(ledger.columns)


def _is_numeric(ledger: pl.DataFrame, column: str) -> bool:
    return ledger.schema[column].is_numeric() or ledger.schema[column] == pl.Boolean


def as_float(ledger: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Columns as an (n, k) float64 array; null and ±inf become NaN (treated as missing)."""
    if not columns:
        return np.empty((ledger.height, 0))
    out = ledger.select([pl.col(c).cast(pl.Float64) for c in columns]).to_numpy().astype(np.float64, copy=True)
    out[~np.isfinite(out)] = np.nan
    return out


def group_codes(ledger: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One integer per row identifying its combination of values of ``columns`` (null is a value of its own)."""
    if not columns:
        return np.zeros(ledger.height, dtype=np.int64)
    keyed = ledger.select([pl.col(c).cast(pl.Utf8).fill_null("\x00null") for c in columns])
    codes = keyed.select(pl.struct(pl.all()).rank("dense").alias("_g"))["_g"].to_numpy()
    return codes.astype(np.int64) - 1


def expected_sign(measure: str, target: str, better: str | None = None) -> int:
    """Expected sign of corr(measure, target) = direction(measure) · badness(target).

    direction: the measure registry's expected sign versus the gap (``measure_direction``); badness:
    ``analyze.columns.target_badness(target, better)`` (+1 when larger values are worse; ``better`` = "lower" |
    "higher" sets it for a target without a known orientation). 0 when either is unknown.
    """
    return measure_direction(measure) * target_badness(target, better)


def measure_direction(measure: str) -> int:
    """+1 / −1: the sign of corr(measure, gap) the literature expects (the measure registry's entry for the column's
    key, or for the registry measure a public ledger's name stands for, ``analyze.public_ledger.registry_key``);
    0 when neither is registered. Read from the torch-free ``collect.catalog``."""
    return _direction(measure) or _direction(MEASURE + registry_key(measure))


def _direction(measure: str) -> int:
    return expected_direction(measure)


def sign_word(s: float | int) -> str:
    return "positive" if s > 0 else "negative" if s < 0 else "zero"
