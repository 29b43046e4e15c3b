"""Shaping ledger rows into chart data: short field keys, sampling of large scatters, colour groups, labels.

Nothing here is a statistic: rows are selected, renamed and (above ``MAX_POINTS``) sampled with a fixed seed so the
page stays small and fast; every sampling is reported in a note beside its chart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import polars as pl

from analyze.columns import DIAG, GEN, HP, MEASURE, TAG, TIME

MAX_POINTS = 5000  # a scatter with more runs shows a seeded random sample of this many (and says so)
MAX_GROUP_LEVELS = 12  # a column with more distinct values is not offered as a colour grouping
DECADES_FOR_LOG = 2.0  # a positive quantity spanning at least this many decades gets a log axis

# Units and readable names of well-known columns; anything else is shown by its short name.
TARGET_LABELS = {
    "gen.gap": "accuracy gap (train − validation, fraction; Robust-Generalization-Measures ledgers)",
    "gen.gap_acc": "accuracy gap (train − test, fraction)",
    "gen.gap_loss": "loss gap (test − train, nats)",
    "gen.test_acc": "test accuracy (fraction)",
    "gen.test_err": "test error (fraction)",
    "gen.test_loss": "test loss (nats)",
    "gen.train_acc": "train accuracy (fraction)",
    "gen.train_loss": "train loss (nats)",
    "gen.val_acc": "validation accuracy (fraction)",
}
MEASURE_UNITS = {
    "hessian_trace": "Tr H",
    "lambda_max": "λ_max of H",
    "hessian_frobenius": "‖H‖_F",
    "sharpness": "Keskar sharpness, %",
    "log_volume": "log P(f), nats",
    "margin": "logit units",
    "softmax_margin": "probability",
}
HP_LABELS = {
    "hp.lr": "learning rate η",
    "hp.batch_size": "batch size (samples)",
    "hp.weight_decay": "weight decay",
    "hp.dropout": "dropout p",
    "hp.alpha_scale": "alpha scale α",
    "hp.last_layer_scale": "last-layer scale",
}
CURVE_LABELS = {
    "train_loss": "train loss (nats)",
    "test_loss": "test loss (nats)",
    "train_acc": "train accuracy (fraction)",
    "test_acc": "test accuracy (fraction)",
}


def short(column: str) -> str:
    """``measure.hessian_trace`` → ``hessian_trace`` (and likewise for the other prefixes)."""
    for prefix in (MEASURE, DIAG, GEN, HP, TIME, TAG):
        if column.startswith(prefix):
            return column[len(prefix) :]
    return column


def label(column: str) -> str:
    """An axis title with units where they are known."""
    if column in TARGET_LABELS:
        return f"{short(column)}: {TARGET_LABELS[column]}"
    if column in HP_LABELS:
        return HP_LABELS[column]
    if column.startswith(TIME):
        return f"{short(column)} (seconds)"
    name = short(column)
    for key, unit in MEASURE_UNITS.items():
        if name == key or (name.startswith(key + "_") and key in ("margin", "softmax_margin") and not name.endswith(("_skew", "_kurtosis"))):
            return f"{name} ({unit})"
    return name


def finite_values(frame: pl.DataFrame, column: str) -> pl.Series:
    """The column as float with null, NaN and ±inf removed."""
    s = frame[column].cast(pl.Float64, strict=False).drop_nulls()
    return s.filter(s.is_finite())


def spans_decades(values: pl.Series, decades: float = DECADES_FOR_LOG) -> bool:
    """True when every value is positive and max/min covers at least ``decades`` powers of ten (→ log axis)."""
    if values.len() < 2:
        return False
    lo, hi = values.min(), values.max()
    return lo is not None and lo > 0 and math.log10(hi / lo) >= decades


def sample(frame: pl.DataFrame, max_rows: int = MAX_POINTS, seed: int = 0, what: str = "runs") -> tuple[pl.DataFrame, str]:
    """At most ``max_rows`` rows (a seeded random sample, kept in original order) and a note saying so, if sampled."""
    if frame.height <= max_rows:
        return frame, ""
    picked = frame.with_row_index("_row").sample(max_rows, seed=seed).sort("_row").drop("_row")
    return picked, f"{max_rows:,} of {frame.height:,} {what} shown (random sample, seed {seed}), so the page stays small and fast."


def records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts for a chart's inline data; NaN and ±inf become null (JSON has neither)."""
    out = frame.to_dicts()
    for row in out:
        for k, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):
                row[k] = None
    return out


@dataclass(frozen=True)
class Grouping:
    """A way to colour runs: a ledger column and, per run, the label ``name=value`` shown in the legend."""

    column: str
    title: str


def groupings(frame: pl.DataFrame, max_levels: int = MAX_GROUP_LEVELS) -> list[Grouping]:
    """Candidate colourings: the intervention tag, then every hyperparameter that varies, each with ≤ max_levels values.

    The intervention comes first when it has few enough values; otherwise the varied axis with the fewest values
    leads, so the default colouring is readable.
    """
    levels: dict[str, int] = {}
    for col in ["tag.intervention", *[c for c in frame.columns if c.startswith(HP)]]:
        if col in frame.columns:
            k = frame[col].cast(pl.Utf8).n_unique()
            if 2 <= k <= max_levels:
                levels[col] = k
    lead = ["tag.intervention"] if "tag.intervention" in levels else []
    ordered = lead + sorted((c for c in levels if c != "tag.intervention"), key=lambda c: levels[c])
    return [Grouping(c, "intervention" if c == "tag.intervention" else short(c)) for c in ordered]


def group_labels(frame: pl.DataFrame, grouping: Grouping) -> pl.Series:
    """Per run ``title=value`` (``none`` for missing), a string so the legend reads on its own."""
    values = frame[grouping.column].cast(pl.Utf8).fill_null("none")
    if grouping.column == "tag.intervention":
        return values
    return pl.Series([f"{grouping.title}={v}" for v in values.to_list()], dtype=pl.Utf8)


def field_keys(prefix: str, n: int) -> list[str]:
    """Short, dot-free field names for chart data (Vega reads dots in a field name as nesting)."""
    return [f"{prefix}{i}" for i in range(n)]


def present(frame: pl.DataFrame | None, columns: Iterable[str] = ()) -> bool:
    """The frame exists, has rows, and has every listed column."""
    return frame is not None and frame.height > 0 and all(c in frame.columns for c in columns)


def first_present(columns: Sequence[str], frame: pl.DataFrame) -> str | None:
    for c in columns:
        if c in frame.columns and finite_values(frame, c).len() > 0:
            return c
    return None
