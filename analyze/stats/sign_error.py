"""Sign-error over environments (Dziugaite et al. 2020, "In search of robust measures of generalization").

An *environment* is a pair of hyperparameter configurations that differ in exactly one intervention (its axis:
one ``hp.*`` column, or a group of columns the spec moves together, see ``analyze.stats.interventions``). Every
pair of runs (r₁ from one configuration, r₂ from the other, all seeds) scores the sign error
(1 − sign(Δmeasure)·sign(Δgap))/2: 0 when the measure orders the two runs like the gap, 1 when it reverses them,
½ on a tie. Each run pair is weighted by how sure we are that its gap difference is real: with test sets of n
points, Hoeffding's inequality gives P(the observed order is right) ≥ 1 − 2·exp(−n·Δ²/2) for a gap difference Δ
between two independent test-set estimates; the weight is that bound squared, shifted down by ``min_weight``
(½, so pairs within noise count nothing) and clipped at 0. The environment's error is the weighted mean; its
effective sample size (Σw)²/Σw² must reach ``min_ess`` (the paper uses 12) for it to count. Per axis the table
gives the mean, the 90th percentile and the max (the robust statistic) of the environments' errors, and ``ALL``
pools the environments of every axis.

An empty row says why, as data: ``reason`` is ``no_environments`` (no two configurations differ only in this
intervention), ``ess_below_min`` (no environment reaches ``min_ess``; an environment of configurations with s₁ and s₂
seeds has at most s₁·s₂ run pairs, so ESS ≤ s₁·s₂: one seed gives ESS ≤ 1), or ``within_noise`` (every gap
difference is within test-set noise, Hoeffding weight 0); ``max_ess`` is the largest ESS reached,
``seeds_per_config`` the most finished runs of one configuration, and ``fix`` says
what would fill the row (``--min-ess``, more seeds, larger test sets).

Small samples: a summary over fewer than ``MIN_ENVIRONMENTS`` = 10 kept environments says so in ``note`` (the 90th
percentile of fewer than 10 values lies between the two largest, so p90 and max are then one or two environments'
errors, not a distribution).

Hoeffding weights need the target to be an accuracy-type fraction in [0, 1] (gap_acc, test_acc, test_err); for
loss targets the pairs are weighted equally (``weighting`` says which). The test-set size comes from ``hp.n_test``
(per run; a pair uses the smaller) or from ``n_test``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import polars as pl

from analyze.columns import DEFAULT_TARGET
from analyze.stats._data import StatsError, all_hp_columns, as_float, finished_runs, group_codes, pick_measures, pick_targets
from analyze.stats.interventions import interventions

ALL = "ALL"
MIN_ENVIRONMENTS = 10
HOEFFDING_TARGETS = ("gen.gap_acc", "gen.test_acc", "gen.test_err", "gen.train_acc")
SCHEMA: dict[str, pl.DataType] = {
    "measure": pl.Utf8,
    "target": pl.Utf8,
    "axis": pl.Utf8,
    "mean": pl.Float64,
    "p90": pl.Float64,
    "max": pl.Float64,
    "n_envs": pl.Int64,
    "n_envs_kept": pl.Int64,
    "n_pairs": pl.Int64,
    "weighting": pl.Utf8,
    "max_ess": pl.Float64,
    "seeds_per_config": pl.Int64,
    "reason": pl.Utf8,
    "fix": pl.Utf8,
    "note": pl.Utf8,
}
ENV_SCHEMA: dict[str, pl.DataType] = {
    "measure": pl.Utf8, "target": pl.Utf8, "axis": pl.Utf8, "error": pl.Float64, "ess": pl.Float64,
}


def hoeffding_weight(delta: np.ndarray, n_test: np.ndarray | int, min_weight: float = 0.5) -> np.ndarray:
    """(P_Hoeffding(sign of Δgap is right)² − min_weight)₊ with P = max(0, 1 − 2 exp(−n Δ²/2))."""
    prob = np.maximum(0.0, 1.0 - 2.0 * np.exp(-2.0 * np.asarray(n_test, dtype=np.float64) * (np.abs(delta) / 2.0) ** 2))
    return np.maximum(prob**2 - min_weight, 0.0)


def environment_pairs(
    runs: pl.DataFrame, axis: str | Sequence[str], config_cols: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All run pairs (i, j) whose configurations differ in ``axis`` only (a column or an intervention's columns),
    and an environment id per pair. The environment of a pair is its (unordered) pair of configurations.
    """
    moved = {axis} if isinstance(axis, str) else set(axis)
    cell = group_codes(runs, [c for c in config_cols if c not in moved])
    config = group_codes(runs, config_cols)
    order = np.lexsort((config, cell))
    sizes = np.bincount(cell[order])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    ii, jj = [], []
    for m in np.unique(sizes):
        if m < 2:
            continue
        a, b = np.triu_indices(m, 1)
        cells = np.flatnonzero(sizes == m)
        ia = order[starts[cells][:, None] + a[None, :]].ravel()
        ib = order[starts[cells][:, None] + b[None, :]].ravel()
        keep = config[ia] != config[ib]
        ii.append(ia[keep])
        jj.append(ib[keep])
    i = np.concatenate(ii) if ii else np.empty(0, dtype=np.int64)
    j = np.concatenate(jj) if jj else np.empty(0, dtype=np.int64)
    lo, hi = np.minimum(config[i], config[j]), np.maximum(config[i], config[j])
    n_config = int(config.max()) + 1 if config.size else 1
    env = np.unique(lo * n_config + hi, return_inverse=True)[1].reshape(-1) if i.size else np.empty(0, dtype=np.int64)
    return i, j, env


def sign_error(ledger: pl.DataFrame, **options) -> pl.DataFrame:
    """Mean, 90th percentile and max sign-error over environments, per axis and pooled (``ALL``).

    Options: target, measures, axes, n_test, min_ess, hoeffding, min_weight (see ``sign_error_tables``).
    """
    return sign_error_tables(ledger, **options)[0]


def sign_error_environments(ledger: pl.DataFrame, **options) -> pl.DataFrame:
    """One row per kept environment: measure, target, axis, error, ess (the distribution behind the summary)."""
    return sign_error_tables(ledger, **options)[1]


def sign_error_tables(
    ledger: pl.DataFrame,
    *,
    target: str = DEFAULT_TARGET,
    measures: Sequence[str] | None = None,
    axes: Sequence[str] | None = None,
    n_test: int | None = None,
    min_ess: float = 12.0,
    hoeffding: bool = True,
    min_weight: float = 0.5,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(summary per measure × axis, kept environments)."""
    runs = finished_runs(ledger)
    (target,) = pick_targets(runs, target)
    measure_cols = pick_measures(runs, measures)
    found = interventions(runs, axes)
    if not found:
        raise StatsError("sign-error: no hp.* column takes two or more values among the finished runs")
    axis_cols = [iv.name for iv in found]
    config_cols = list(dict.fromkeys(all_hp_columns(runs) + [a for iv in found for a in iv.axes]))
    gap = as_float(runs, [target])[:, 0]
    weighting = "uniform"
    n_runs_test = None
    if hoeffding and target in HOEFFDING_TARGETS:
        n_runs_test = _test_sizes(runs, n_test)
        finite = gap[np.isfinite(gap)]
        if finite.size and np.abs(finite).max() > 1:
            raise StatsError(
                f"sign-error: {target} has values up to {np.abs(finite).max():.4g}, but Hoeffding weights need accuracies "
                "as fractions in [0, 1]; rescale the column or pass --no-hoeffding"
            )
        weighting = "hoeffding"
    x = as_float(runs, measure_cols)
    pairs = {iv.name: environment_pairs(runs, iv.axes, config_cols) for iv in found}
    config = group_codes(runs, config_cols)
    rows: list[dict] = []
    env_labels: dict[str, list[str]] = {"measure": [], "target": [], "axis": []}
    env_values: dict[str, list[np.ndarray]] = {"error": [], "ess": []}
    # per axis, what depends on the complete runs only (not on the measure's values): kept while consecutive
    # measures have the same complete runs (one set at a time bounds the memory)
    kept: dict[str, tuple] = {}
    kept_for = b""
    for k, measure in enumerate(measure_cols):
        pooled: list[np.ndarray] = []
        xk = np.ascontiguousarray(x[:, k])
        ok_runs = np.isfinite(xk) & np.isfinite(gap)
        per_config = int(np.bincount(config[ok_runs]).max(initial=0)) if ok_runs.any() else 0
        if ok_runs.tobytes() != kept_for:
            kept, kept_for = {}, ok_runs.tobytes()
        for axis in axis_cols:
            if axis not in kept:
                i, j, env = pairs[axis]
                ok = ok_runs[i] & ok_runs[j]
                i_, j_, env_ = i[ok], j[ok], env[ok]
                if n_runs_test is not None:
                    w = hoeffding_weight(gap[i_] - gap[j_], np.minimum(n_runs_test[i_], n_runs_test[j_]), min_weight)
                else:
                    w = np.ones(i_.size)
                kept[axis] = (i_, j_, env_, np.sign(gap[i_] - gap[j_]), w, environment_weights(env_, w, min_ess))
            i_, j_, env_, gap_sign, w, weights = kept[axis]
            err = (1.0 - np.sign(xk[i_] - xk[j_]) * gap_sign) / 2.0
            losses, n_envs, ess, max_ess = _environment_losses(env_, err, w, weights)
            pooled.append(losses)
            for col, label in (("measure", measure), ("target", target), ("axis", axis)):
                env_labels[col].extend([label] * losses.size)
            env_values["error"].append(losses)
            env_values["ess"].append(ess)
            rows.append(_summary(measure, target, axis, losses, n_envs, int(i_.size), weighting, min_ess, max_ess,
                                 int(w.size and (w > 0).any()), per_config))
        last = rows[-len(axis_cols) :]
        allv = np.concatenate(pooled) if pooled else np.empty(0)
        n_all = sum(r["n_envs"] for r in last)
        n_pairs = sum(r["n_pairs"] for r in last)
        max_all = max((r["max_ess"] for r in last if r["max_ess"] is not None), default=None)
        rows.append(_summary(measure, target, ALL, allv, n_all, n_pairs, weighting, min_ess, max_all,
                             int(any(r["reason"] != "within_noise" for r in last if r["n_envs"])), last[0]["seeds_per_config"]))
    envs = pl.DataFrame({**env_labels, **{c: np.concatenate(v) if v else np.empty(0) for c, v in env_values.items()}},
                        schema=ENV_SCHEMA)
    return pl.DataFrame(rows, schema=SCHEMA, orient="row"), envs


def _test_sizes(runs: pl.DataFrame, n_test: int | None) -> np.ndarray:
    if "hp.n_test" in runs.columns:
        sizes = as_float(runs, ["hp.n_test"])[:, 0]
        if n_test is not None:
            sizes = np.where(np.isfinite(sizes), sizes, n_test)
        if np.isfinite(sizes).all() and (sizes > 0).all():
            return sizes
        raise StatsError("sign-error: hp.n_test is missing or not positive for some runs; fill it or pass --n-test N")
    if n_test is None:
        raise StatsError(
            "sign-error needs the test-set size for its Hoeffding weights: add an hp.n_test column to the ledger, "
            "pass --n-test N, or pass --no-hoeffding to weight every pair equally"
        )
    if n_test <= 0:
        raise StatsError(f"--n-test {n_test}: must be a positive number of test points")
    return np.full(runs.height, float(n_test))


def environment_weights(env: np.ndarray, w: np.ndarray,
                        min_ess: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Per environment: total pair weight Σw, effective sample size (Σw)²/Σw², whether it is kept (present, Σw > 0,
    ESS ≥ ``min_ess``) and whether it has a pair at all; None without environments. They depend on the gap and the
    pairs only, not on the measure's values, so one computation serves every measure with the same complete runs."""
    if env.size == 0:
        return None
    n_env = int(env.max()) + 1
    sw = np.bincount(env, weights=w, minlength=n_env)
    sw2 = np.bincount(env, weights=w * w, minlength=n_env)
    present = np.bincount(env, minlength=n_env) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = np.where(sw2 > 0, sw * sw / np.where(sw2 > 0, sw2, 1.0), 0.0)
    keep = present & (sw > 0) & (ess >= min_ess - 1e-9)
    return sw, ess, keep, present


def _environment_losses(
    env: np.ndarray, err: np.ndarray, w: np.ndarray, weights: tuple | None
) -> tuple[np.ndarray, int, np.ndarray, float | None]:
    """Weighted sign-error of each environment that passes the effective-sample-size filter (``weights`` from
    ``environment_weights``); how many exist; the largest ESS reached (None without environments)."""
    if weights is None:
        return np.empty(0), 0, np.empty(0), None
    sw, ess, keep, present = weights
    swe = np.bincount(env, weights=w * err, minlength=sw.size)
    return swe[keep] / sw[keep], int(present.sum()), ess[keep], float(ess[present].max())


def _summary(measure: str, target: str, axis: str, losses: np.ndarray, n_envs: int, n_pairs: int, weighting: str,
             min_ess: float, max_ess: float | None, any_weight: int, seeds: int) -> dict:
    """One summary row; an empty one says why (``reason``) and what would fill it (``fix``)."""
    note = reason = fix = None
    if n_envs == 0:
        reason = "no_environments"
        note = f"no two configurations differ only in {axis}" if axis != ALL else "no environments"
        fix = "run a grid in which configurations differ in one intervention at a time"
    elif losses.size == 0 and not any_weight:
        reason = "within_noise"
        note = (f"every gap difference between the {n_envs} environments' runs is within test-set noise "
                "(Hoeffding weight 0)")
        fix = "use larger test sets (hp.n_test) or interventions that move the gap more, or pass --no-hoeffding"
    elif losses.size == 0:
        reason = "ess_below_min"
        need = int(np.ceil(np.sqrt(min_ess)))
        note = (f"none of the {n_envs} environments reaches an effective sample size of {min_ess:g} (largest "
                f"{max_ess:.3g}, with {seeds} seed(s) per configuration: ESS ≤ seeds²)")
        fix = f"run at least {need} seeds per configuration, or lower --min-ess (to at most {max_ess:.3g})"
    elif losses.size < MIN_ENVIRONMENTS:
        note = (f"only {losses.size} environment(s) kept, fewer than {MIN_ENVIRONMENTS}: p90 and max are one or two "
                "environments' errors, not a distribution")
        fix = "run a grid with more configurations per intervention (more levels of the other hyperparameters)"
    return {
        "measure": measure, "target": target, "axis": axis,
        "mean": float(losses.mean()) if losses.size else None,
        "p90": float(np.percentile(losses, 90)) if losses.size else None,
        "max": float(losses.max()) if losses.size else None,
        "n_envs": n_envs, "n_envs_kept": int(losses.size), "n_pairs": n_pairs, "weighting": weighting,
        "max_ess": max_ess, "seeds_per_config": seeds, "reason": reason, "fix": fix, "note": note,
    }
