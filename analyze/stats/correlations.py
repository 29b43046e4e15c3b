"""Correlations of every measure with every generalization target: Pearson r, Spearman ρ, Kendall τ-b.

Coefficients and p-values are scipy.stats' own (``pearsonr``, ``spearmanr``, ``kendalltau``) on the runs that have
both values. The optional confidence intervals (``resamples`` > 0) are seeded BCa bootstrap intervals
(``analyze.stats.bootstrap``). For Spearman ρ and Kendall τ from n ≤ ``rank_intervals.BELT_MAX_N`` = 50 rows the
interval is the hull of the BCa interval and the Neyman-belt interval of ``analyze.stats.rank_intervals`` (the
interval of the flags and the verdict), ``belt_hull``: a bootstrap of a small group whose ranks agree perfectly
resamples ρ = 1 every time and would print [1.00, 1.00]. A bootstrap interval of zero width (every resample gives one
value) is left null with a note.
One row per measure × target; ``n`` is the number of FINISHED runs used after dropping missing values.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import polars as pl
from scipy import stats

from analyze.numbers import finite_or_none
from analyze.stats._data import as_float, finished_runs, pick_measures, pick_targets
from analyze.stats.bootstrap import METHODS, bca_interval, correlation_replicates, resample_counts
from analyze.stats.rank_intervals import BELT_MAX_N, KINDS as RANK_KINDS, rank_interval
from analyze.defaults import CONFIDENCE

MIN_RUNS = 3
COEF = {"pearson": "pearson_r", "spearman": "spearman_rho", "kendall": "kendall_tau"}

SCHEMA: dict[str, pl.DataType] = {
    "measure": pl.Utf8,
    "target": pl.Utf8,
    "n": pl.Int64,
    "n_missing": pl.Int64,
    **{
        col: pl.Float64
        for m in METHODS
        for col in (COEF[m], f"{m}_p", f"{m}_ci_low", f"{m}_ci_high")
    },
    "note": pl.Utf8,
}


def correlations(
    ledger: pl.DataFrame,
    *,
    targets: Sequence[str] | str | None = None,
    measures: Sequence[str] | None = None,
    resamples: int = 0,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> pl.DataFrame:
    """Pearson, Spearman and Kendall τ-b of each measure with each target, with p-values and BCa CIs.

    ``resamples`` = 0 skips the bootstrap (CI columns are then null). The resamples of each set of complete runs
    are drawn from ``numpy.random.default_rng(seed)``, exactly as scipy.stats.bootstrap would draw them.
    """
    runs = finished_runs(ledger)
    measure_cols = pick_measures(runs, measures)
    target_cols = pick_targets(runs, targets)
    x = as_float(runs, measure_cols)
    y = as_float(runs, target_cols)
    rows: list[dict] = []
    for ti, target in enumerate(target_cols):
        for mi, measure in enumerate(measure_cols):
            ok = np.isfinite(x[:, mi]) & np.isfinite(y[:, ti])
            rows.append(pair_row(measure, target, x[ok, mi], y[ok, ti], runs.height - int(ok.sum())))
    _add_intervals(rows, x, y, measure_cols, target_cols, resamples, confidence, seed)
    return pl.DataFrame(rows, schema=SCHEMA, orient="row") if rows else pl.DataFrame(schema=SCHEMA)


def pair_row(measure: str, target: str, a: np.ndarray, b: np.ndarray, n_missing: int) -> dict:
    """The scipy coefficients and p-values of one measure–target pair (CIs filled in later)."""
    row: dict = {"measure": measure, "target": target, "n": int(a.size), "n_missing": n_missing, "note": None}
    for m in METHODS:
        row[COEF[m]] = row[f"{m}_p"] = row[f"{m}_ci_low"] = row[f"{m}_ci_high"] = None
    note = untestable(measure, target, a, b)
    if note:
        row["note"] = note
        return row
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on near-constant input; the note above covers constant input
        for m, res in (
            ("pearson", stats.pearsonr(a, b)),
            ("spearman", stats.spearmanr(a, b)),
            ("kendall", stats.kendalltau(a, b)),
        ):
            row[COEF[m]] = finite_or_none(res.statistic)
            row[f"{m}_p"] = finite_or_none(res.pvalue)
    return row


def untestable(measure: str, target: str, a: np.ndarray, b: np.ndarray, min_runs: int = MIN_RUNS) -> str | None:
    """Why a correlation cannot be computed on these values, or None."""
    if a.size < min_runs:
        return f"only {a.size} finished run(s) have both {measure} and {target}; at least {min_runs} are needed"
    if np.all(a == a[0]):
        return f"{measure} is constant ({a[0]:.6g}) over the {a.size} runs; its correlation is undefined"
    if np.all(b == b[0]):
        return f"{target} is constant ({b[0]:.6g}) over the {b.size} runs; its correlation is undefined"
    return None


def belt_hull(bca: tuple[float, float], belt: tuple[float, float]) -> tuple[float, float]:
    """[min(lo_bca, lo_belt), max(hi_bca, hi_belt)]: the smallest interval holding both (a NaN bound of one is
    ignored). It covers at least as often as either: the belt where the bootstrap collapses (ranks in perfect
    agreement), the bootstrap where the dependence is not a Gaussian copula (a mixture of levels with opposite
    relations spreads τ more than the belt assumes)."""
    lows = [v for v in (bca[0], belt[0]) if v is not None and np.isfinite(v)]
    highs = [v for v in (bca[1], belt[1]) if v is not None and np.isfinite(v)]
    return (min(lows) if lows else float("nan")), (max(highs) if highs else float("nan"))


def _add_intervals(
    rows: list[dict],
    x: np.ndarray,
    y: np.ndarray,
    measure_cols: list[str],
    target_cols: list[str],
    resamples: int,
    confidence: float,
    seed: int,
) -> None:
    """BCa CIs for every testable row; pairs with the same complete runs share one set of resamples."""
    if resamples <= 0:
        return
    data = np.column_stack([x, y])
    k = len(measure_cols)
    by_rows: dict[bytes, list[tuple[int, int, int]]] = {}
    for r, row in enumerate(rows):
        if row["note"] is not None:
            continue
        mi, ti = measure_cols.index(row["measure"]), target_cols.index(row["target"])
        ok = np.isfinite(data[:, mi]) & np.isfinite(data[:, k + ti])
        by_rows.setdefault(np.packbits(ok).tobytes() + ok.size.to_bytes(8, "little"), []).append((r, mi, k + ti))
    for members in by_rows.values():
        _, i0, j0 = members[0]
        ok = np.isfinite(data[:, i0]) & np.isfinite(data[:, j0])
        sub = data[ok]
        counts = resample_counts(np.random.default_rng(seed), sub.shape[0], resamples)
        pairs = np.array([(i, j) for _, i, j in members])
        n = sub.shape[0]
        for m in METHODS:
            lo, hi = bca_interval(correlation_replicates(sub, pairs, m, counts), confidence)
            for (r, _, _), l_, h_ in zip(members, lo, hi):
                if n <= BELT_MAX_N and m in RANK_KINDS:  # small n: never narrower than the flags' belt, never [1, 1]
                    l_, h_ = belt_hull((l_, h_), rank_interval(rows[r][COEF[m]], n, confidence, m))
                if not h_ > l_:  # every resample gave the same value (values on a line): no interval to show
                    l_ = h_ = float("nan")
                    coef = rows[r][COEF[m]]
                    why = (f"{m} interval undefined: every bootstrap resample gives {COEF[m]} = {coef:.6g}"
                           if coef is not None else
                           f"{m} interval undefined: {COEF[m]} itself is undefined on these values (scipy gives NaN, "
                           f"e.g. when their squares overflow float64)")
                    rows[r]["note"] = why if rows[r]["note"] is None else f"{rows[r]['note']}; {why}"
                rows[r][f"{m}_ci_low"], rows[r][f"{m}_ci_high"] = finite_or_none(l_), finite_or_none(h_)
