"""Partial correlations of a measure with a target controlling for covariates (Pearson, Spearman, Kendall).

Pearson: the correlation of the OLS residuals of measure and target on the covariates, computed with the
precision-matrix formula r_xy·Z = −P_xy / sqrt(P_xx P_yy), P = R⁻¹ over (x, y, Z); p-value from Student's t with
n − 2 − k degrees of freedom (k covariates), which equals the t-test of x's coefficient in the OLS of y on (x, Z).
Spearman: the same on average ranks. Kendall's partial τ: the same formula on the matrix of pairwise τ-b, which for
one covariate is the standard τ_xy·z = (τ_xy − τ_xz τ_yz) / sqrt((1 − τ_xz²)(1 − τ_yz²)); its p-value uses the
large-sample normal approximation z = 3 τ sqrt(n(n−1)) / sqrt(2(2n+5)) (as in R's ppcor, Kim 2015).
Intervals: BCa bootstrap (every pairwise coefficient resampled together, then the formula per resample).

This is how paper 000's claim (flatness tracks generalization through margins) or paper 003's (through weight
scale) is tested: control for ``measure.margin_mean`` or a norm and see what is left.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Sequence

import numpy as np
import polars as pl
from scipy import stats
from threadpoolctl import threadpool_limits

from analyze.stats._data import StatsError, as_float, finished_runs, pick_measures, pick_targets, require_columns
from analyze.stats.bootstrap import METHODS, Replicates, bca_interval, correlation_replicates, resample_counts
from analyze.stats.correlations import COEF
from analyze.defaults import CONFIDENCE

SCHEMA: dict[str, pl.DataType] = {
    "measure": pl.Utf8,
    "target": pl.Utf8,
    "covariates": pl.Utf8,
    "n": pl.Int64,
    "n_missing": pl.Int64,
    **{col: pl.Float64 for m in METHODS for col in (COEF[m], f"{m}_p", f"{m}_ci_low", f"{m}_ci_high")},
    "note": pl.Utf8,
}
MATRIX_SCHEMA: dict[str, pl.DataType] = {
    "measure": pl.Utf8,
    "control": pl.Utf8,
    "target": pl.Utf8,
    "n": pl.Int64,
    **{col: pl.Float64 for m in METHODS for col in (COEF[m], f"{m}_p")},
    "note": pl.Utf8,
}


def partial_from_matrix(r: np.ndarray) -> np.ndarray:
    """Partial correlation of variables 0 and 1 given the rest, from (..., d, d) correlation matrices."""
    with np.errstate(invalid="ignore", divide="ignore"):
        try:
            p = np.linalg.inv(r)
        except np.linalg.LinAlgError:
            p = np.linalg.pinv(r)
        out = -p[..., 0, 1] / np.sqrt(p[..., 0, 0] * p[..., 1, 1])
    return np.clip(out, -1.0, 1.0)


def pearson_partial_p(r: float, n: int, k: int) -> float:
    """Two-sided p-value of a Pearson/Spearman partial correlation (t with n − 2 − k df)."""
    df = n - 2 - k
    if df < 1 or not np.isfinite(r):
        return float("nan")
    if abs(r) >= 1:
        return 0.0
    t = r * np.sqrt(df / (1 - r * r))
    return float(2 * stats.t.sf(abs(t), df))


def kendall_partial_p(tau: float, n: int) -> float:
    """Two-sided p-value of a partial τ, normal approximation of its null variance 2(2n+5) / (9n(n−1))."""
    if n < 3 or not np.isfinite(tau):
        return float("nan")
    z = 3 * tau * np.sqrt(n * (n - 1)) / np.sqrt(2 * (2 * n + 5))
    return float(2 * stats.norm.sf(abs(z)))


def coefficient_matrices(
    data: np.ndarray, names: Sequence[str] | None = None, cache: dict | None = None
) -> dict[str, np.ndarray]:
    """Pearson, Spearman and Kendall τ-b matrices of the columns of complete ``data`` (n, d), via scipy.

    With ``names`` and a ``cache`` dict, each Kendall τ (the costly one) is computed once per column pair and set
    of runs, and reused across calls.
    """
    d = data.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # one BLAS thread: the d × d product is microseconds of work, while an idle second OpenBLAS thread
        # spin-waits for tens of CPU milliseconds after each call (same matrices: each output block is summed
        # by one thread in either case, checked equal in tests/analyze/stats/test_shared_work.py)
        with threadpool_limits(1, user_api="blas"):
            pearson = np.corrcoef(data, rowvar=False)
            ranks = stats.rankdata(data, axis=0)
            spearman = np.corrcoef(ranks, rowvar=False)
        kendall = np.eye(d)
        for i, j in itertools.combinations(range(d), 2):
            key = None if names is None or cache is None else (frozenset((names[i], names[j])), data.shape[0], data[:, i].tobytes(), data[:, j].tobytes())
            if key is not None and key in cache:
                tau = cache[key]
            else:
                tau = stats.kendalltau(data[:, i], data[:, j]).statistic
                if key is not None:
                    cache[key] = tau
            kendall[i, j] = kendall[j, i] = tau
    return {"pearson": np.atleast_2d(pearson), "spearman": np.atleast_2d(spearman), "kendall": kendall}


def partial_correlations(
    ledger: pl.DataFrame,
    *,
    covariates: Sequence[str],
    targets: Sequence[str] | str | None = None,
    measures: Sequence[str] | None = None,
    resamples: int = 0,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> pl.DataFrame:
    """Each measure with each target, controlling for ``covariates`` (any numeric ledger columns)."""
    if not covariates:
        raise StatsError("partial correlations need at least one covariate, e.g. --covariates measure.margin_mean")
    runs = finished_runs(ledger)
    covs = list(covariates)
    require_columns(runs, covs, "--covariates")
    target_cols = pick_targets(runs, targets)
    measure_cols = [m for m in pick_measures(runs, measures) if m not in covs]
    if not measure_cols:
        raise StatsError("every measure is also a covariate; nothing is left to correlate")
    label = ",".join(covs)
    rows: list[dict] = []
    boot_jobs: dict[bytes, list[tuple[int, list[str]]]] = {}
    tau_cache: dict = {}
    for target in target_cols:
        if target in covs:
            raise StatsError(f"--covariates: the target {target} cannot also be a covariate")
        for measure in measure_cols:
            cols = [measure, target, *covs]
            values = as_float(runs, cols)
            ok = np.isfinite(values).all(axis=1)
            row = _partial_row(measure, target, label, values[ok], runs.height - int(ok.sum()), cols, tau_cache)
            rows.append(row)
            if row["note"] is None and resamples > 0:
                boot_jobs.setdefault(ok.tobytes(), []).append((len(rows) - 1, cols))
    for jobs in boot_jobs.values():
        _bootstrap_partials(runs, rows, jobs, resamples, confidence, seed)
    return pl.DataFrame(rows, schema=SCHEMA, orient="row") if rows else pl.DataFrame(schema=SCHEMA)


def _partial_row(
    measure: str, target: str, label: str, data: np.ndarray, n_missing: int, names: Sequence[str], cache: dict
) -> dict:
    n, d = data.shape
    k = d - 2
    row: dict = {"measure": measure, "target": target, "covariates": label, "n": n, "n_missing": n_missing, "note": None}
    for m in METHODS:
        row[COEF[m]] = row[f"{m}_p"] = row[f"{m}_ci_low"] = row[f"{m}_ci_high"] = None
    note = _partial_untestable(data, [measure, target], k)
    if note:
        row["note"] = note
        return row
    mats = coefficient_matrices(data, names, cache)
    for m in METHODS:
        r = float(partial_from_matrix(mats[m]))
        if not np.isfinite(r):
            row["note"] = "the covariates are collinear with the measure or the target; the partial correlation is undefined"
            continue
        row[COEF[m]] = r
        row[f"{m}_p"] = kendall_partial_p(r, n) if m == "kendall" else pearson_partial_p(r, n, k)
    return row


def _partial_untestable(data: np.ndarray, names: list[str], k: int) -> str | None:
    n = data.shape[0]
    if n < k + 4:
        return f"only {n} complete run(s); a partial correlation with {k} covariate(s) needs at least {k + 4}"
    const = np.all(data == data[0], axis=0)
    if const.any():
        which = names[int(np.argmax(const[:2]))] if const[:2].any() else "a covariate"
        return f"{which} is constant over the {n} complete runs; the partial correlation is undefined"
    return None


def _bootstrap_partials(
    runs: pl.DataFrame, rows: list[dict], jobs: list[tuple[int, list[str]]], resamples: int, confidence: float, seed: int
) -> None:
    """BCa intervals for partial coefficients sharing one set of complete runs (pairwise coefficients cached)."""
    columns = list(dict.fromkeys(c for _, cols in jobs for c in cols))
    values = as_float(runs, columns)
    ok = np.isfinite(values[:, [columns.index(c) for c in jobs[0][1]]]).all(axis=1)
    data = values[ok]
    counts = resample_counts(np.random.default_rng(seed), data.shape[0], resamples)
    needed = sorted({tuple(sorted((columns.index(a), columns.index(b)))) for _, cols in jobs for a, b in itertools.combinations(cols, 2)})
    pairs = np.array(needed, dtype=np.int64)
    where = {p: i for i, p in enumerate(needed)}
    for m in METHODS:
        rep = correlation_replicates(data, pairs, m, counts)
        for r, cols in jobs:
            idx = [columns.index(c) for c in cols]
            est = _partial_of(rep.estimate[None, :], idx, where)
            boot = _partial_of(rep.boot, idx, where)[:, None]
            jack = _partial_of(rep.jack, idx, where)[:, None]
            lo, hi = bca_interval(Replicates(est, boot, jack), confidence)
            rows[r][f"{m}_ci_low"] = float(lo[0]) if np.isfinite(lo[0]) else None
            rows[r][f"{m}_ci_high"] = float(hi[0]) if np.isfinite(hi[0]) else None


def _partial_of(values: np.ndarray, idx: list[int], where: dict[tuple[int, int], int]) -> np.ndarray:
    """Partial coefficient of idx[0], idx[1] given idx[2:] for each row of pairwise coefficients (R, P)."""
    d = len(idx)
    mat = np.broadcast_to(np.eye(d), (values.shape[0], d, d)).copy()
    for a, b in itertools.combinations(range(d), 2):
        col = values[:, where[tuple(sorted((idx[a], idx[b])))]]
        mat[:, a, b] = mat[:, b, a] = col
    return partial_from_matrix(mat)


def _matrix_complete(mats: dict[str, np.ndarray], measure_cols: Sequence[str], target: str, n: int) -> pl.DataFrame:
    """``partial_matrix`` when every run has every value: the 3 × 3 coefficient matrices of all (measure, target,
    control) triples go through ``partial_from_matrix`` and the p-values through scipy in one vectorised call each,
    in the row order of the general path."""
    pairs = [(i, j) for i in range(1, len(measure_cols) + 1) for j in range(1, len(measure_cols) + 1) if i != j]
    idx = np.array([[i, 0, j] for i, j in pairs], dtype=np.int64)
    out: dict[str, list] = {"measure": [measure_cols[i - 1] for i, _ in pairs],
                            "control": [measure_cols[j - 1] for _, j in pairs], "target": [target] * len(pairs),
                            "n": [n] * len(pairs)}
    undefined = np.zeros(len(pairs), dtype=bool)
    for m in METHODS:
        r = partial_from_matrix(mats[m][idx[:, :, None], idx[:, None, :]]) if pairs else np.empty(0)
        finite = np.isfinite(r)
        undefined |= ~finite
        with np.errstate(invalid="ignore", divide="ignore"):
            if m == "kendall":
                p = 2 * stats.norm.sf(np.abs(3 * r * np.sqrt(n * (n - 1)) / np.sqrt(2 * (2 * n + 5)))) if n >= 3 else np.full(r.shape, np.nan)
            else:
                df = n - 3
                t = r * np.sqrt(df / (1 - r * r))
                p = np.where(np.abs(r) >= 1, 0.0, 2 * stats.t.sf(np.abs(t), df)) if df >= 1 else np.full(r.shape, np.nan)
        out[COEF[m]] = [float(v) if ok else None for v, ok in zip(r, finite)]
        out[f"{m}_p"] = [float(v) if ok else None for v, ok in zip(p, finite)]
    out["note"] = [f"{measure_cols[j - 1]} is collinear with {measure_cols[i - 1]} or {target}; undefined" if bad else None
                   for (i, j), bad in zip(pairs, undefined)]
    return pl.DataFrame(out, schema=MATRIX_SCHEMA)


def partial_matrix(
    ledger: pl.DataFrame, *, target: str | None = None, measures: Sequence[str] | None = None
) -> pl.DataFrame:
    """Matrix mode: each measure with the target controlling for each other measure, one at a time."""
    runs = finished_runs(ledger)
    (target,) = pick_targets(runs, target or "gen.gap_acc")
    measure_cols = pick_measures(runs, measures)
    if len(measure_cols) < 2:
        raise StatsError("partial matrix mode needs at least two measures (each controls for the others)")
    values = as_float(runs, [target, *measure_cols])
    rows: list[dict] = []
    complete = np.isfinite(values).all(axis=1)
    fast = complete.all() and _partial_untestable(values, [target] * values.shape[1], 1) is None
    if fast:
        return _matrix_complete(coefficient_matrices(values), measure_cols, target, values.shape[0])
    mats = None
    n_all = values.shape[0]
    for i, measure in enumerate(measure_cols, start=1):
        for j, control in enumerate(measure_cols, start=1):
            if i == j:
                continue
            row: dict = {"measure": measure, "control": control, "target": target, "note": None}
            for m in METHODS:
                row[COEF[m]] = row[f"{m}_p"] = None
            if mats is not None:
                n, sub = n_all, {m: mats[m][np.ix_([i, 0, j], [i, 0, j])] for m in METHODS}
            else:
                data = values[:, [i, 0, j]]
                data = data[np.isfinite(data).all(axis=1)]
                n = data.shape[0]
                note = _partial_untestable(data, [measure, target], 1)
                if note:
                    rows.append({**row, "n": n, "note": note})
                    continue
                sub = coefficient_matrices(data)
            row["n"] = n
            for m in METHODS:
                r = float(partial_from_matrix(sub[m]))
                if np.isfinite(r):
                    row[COEF[m]] = r
                    row[f"{m}_p"] = kendall_partial_p(r, n) if m == "kendall" else pearson_partial_p(r, n, 1)
                else:
                    row["note"] = f"{control} is collinear with {measure} or {target}; undefined"
            rows.append(row)
    return pl.DataFrame(rows, schema=MATRIX_SCHEMA, orient="row")
