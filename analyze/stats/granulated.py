"""Granulated Kendall coefficient Ψ (Jiang et al. 2020, "Fantastic Generalization Measures", eq. 4–5).

For intervention i (one ``hp.*`` column, or a group of columns the spec moves together, see
``analyze.stats.interventions``), a *cell* is a set of configurations that agree on every other ``hp.*`` column, so
only intervention i varies inside it (a zipped group varies through its joint level). ψ_i is the mean over cells of
Kendall's τ-b between measure and target inside the cell; Ψ = the mean of ψ_i over the interventions. Seeds are
averaged within a configuration first (``average_seeds``), as in the paper, so a cell holds one point per level.

A two-level axis gives cells of two configurations whose τ is +1, −1 (or 0 on a tie): ψ_i is then the mean of those
signs, exactly the paper's definition for two-valued axes. What is guarded is the number of *cells*: ψ_i needs at
least ``MIN_CELLS`` = 6 cells with a defined τ, since below 6 cells even a unanimous sign fails the two-sided sign
test at 5 % (2·0.5⁵ = 0.0625); with fewer, ψ is null and the note says "not enough cells". ``min_configs`` (default
2) is the smallest cell kept. A cell whose measure or target is constant has no τ; it is counted in
``n_cells_undefined`` and left out of the mean.

Uncertainty per axis: ``n_positive`` / ``n_negative`` cells (τ > 0 / τ < 0), the two-sided sign test ``sign_p``
(scipy.stats.binomtest of n_positive out of n_positive + n_negative at ½) and a CI of ψ_i at ``confidence``:
when every cell's τ is −1, 0 or +1 (two-level axes), the Clopper–Pearson interval [p_lo, p_hi] of the share of
positive signs among the non-zero ones, mapped by ψ = (2p − 1)·n_nonzero/n_cells; otherwise the t-interval
ψ ± t_{(1+c)/2, k−1}·sd/√k over the k cells' τ. The ``ALL`` row has Ψ and the sign test over every cell pooled.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import polars as pl

from analyze.columns import DEFAULT_TARGET
from scipy import stats

from analyze.stats._data import StatsError, all_hp_columns, finished_runs, group_codes, pick_measures, pick_targets
from analyze.stats._pairs import pair_counts, tau_b_from_counts
from analyze.defaults import CONFIDENCE
from analyze.stats.interventions import interventions
from analyze.stats.tails import t_quantile

ALL = "ALL"
MIN_CONFIGS = 2
MIN_CELLS = 6
SCHEMA: dict[str, pl.DataType] = {
    "measure": pl.Utf8,
    "target": pl.Utf8,
    "axis": pl.Utf8,
    "psi": pl.Float64,
    "n_cells": pl.Int64,
    "n_cells_undefined": pl.Int64,
    "n_cells_small": pl.Int64,
    "n_points": pl.Int64,
    "n_positive": pl.Int64,
    "n_negative": pl.Int64,
    "sign_p": pl.Float64,
    "psi_ci_low": pl.Float64,
    "psi_ci_high": pl.Float64,
    "note": pl.Utf8,
}
_BIG_GROUP = 400  # cells larger than this are counted by sorting instead of enumerating their pairs


def grouped_tau_b(codes: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kendall τ-b of (x, y) within each group of ``codes``: (tau per group, size per group); NaN if undefined."""
    n_groups = int(codes.max()) + 1 if codes.size else 0
    sizes = np.bincount(codes, minlength=n_groups)
    s = np.zeros(n_groups)
    tx = np.zeros(n_groups)
    ty = np.zeros(n_groups)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for m in np.unique(sizes):
        if m < 2:
            continue
        groups = np.flatnonzero(sizes == m)
        if m > _BIG_GROUP:
            for g in groups:
                idx = order[starts[g] : starts[g] + m]
                n0, c, d, t1, t2 = pair_counts(x[idx], y[idx])
                s[g], tx[g], ty[g] = c - d, t1, t2
            continue
        a, b = np.triu_indices(m, 1)
        for chunk in np.array_split(groups, max(1, groups.size * a.size // 2_000_000 + 1)):
            if chunk.size == 0:
                continue
            ia = order[starts[chunk][:, None] + a[None, :]]
            ib = order[starts[chunk][:, None] + b[None, :]]
            sx, sy = np.sign(x[ia] - x[ib]), np.sign(y[ia] - y[ib])
            s[chunk] = (sx * sy).sum(axis=1)
            tx[chunk] = (sx == 0).sum(axis=1)
            ty[chunk] = (sy == 0).sum(axis=1)
    n0 = sizes * (sizes - 1) / 2.0
    tau = tau_b_from_counts(n0, s, tx, ty)
    tau[sizes < 2] = np.nan
    return tau, sizes


def granulated_kendall(
    ledger: pl.DataFrame,
    *,
    target: str = DEFAULT_TARGET,
    measures: Sequence[str] | None = None,
    axes: Sequence[str] | None = None,
    average_seeds: bool = True,
    min_configs: int = MIN_CONFIGS,
    min_cells: int = MIN_CELLS,
    confidence: float = CONFIDENCE,
) -> pl.DataFrame:
    """ψ per intervention and Ψ (axis ``"ALL"``) for each measure, with the number of cells each mean is over.

    ``axis`` is the intervention's column, or its columns joined by "+" for a group (``Intervention.name``).
    """
    if min_configs < 2:
        raise StatsError(f"--min-configs {min_configs}: a cell needs at least 2 configurations for a Kendall τ")
    if min_cells < 1:
        raise StatsError(f"min_cells {min_cells}: ψ needs at least one cell")
    runs = finished_runs(ledger)
    (target,) = pick_targets(runs, target)
    measure_cols = pick_measures(runs, measures)
    found = interventions(runs, axes)
    if not found:
        raise StatsError("granulated Kendall: no hp.* column takes two or more values among the finished runs")
    config_cols = list(dict.fromkeys(all_hp_columns(runs) + [a for i in found for a in i.axes]))
    rows: list[dict] = []
    cell_codes: dict[bytes, list[np.ndarray]] = {}  # per set of complete runs: the cells of every intervention
    for measure in measure_cols:
        complete = pl.col(measure).cast(pl.Float64).is_finite() & pl.col(target).cast(pl.Float64).is_finite()
        points = runs.select(config_cols + [measure, target]).filter(complete)
        if average_seeds:
            points = points.group_by(config_cols, maintain_order=True).agg(pl.col(measure).mean(), pl.col(target).mean())
        x = points[measure].cast(pl.Float64).to_numpy()
        y = points[target].cast(pl.Float64).to_numpy()
        key = runs.select(complete.fill_null(False))[:, 0].to_numpy().tobytes()
        if key not in cell_codes:  # the points' configurations, in order, depend only on which runs are complete
            cell_codes[key] = [group_codes(points, [c for c in config_cols if c not in iv.axes]) for iv in found]
        psis = []
        all_taus: list[np.ndarray] = []
        for iv, codes in zip(found, cell_codes[key]):
            tau, sizes = grouped_tau_b(codes, x, y)
            varying = sizes >= 2
            big = sizes >= min_configs
            defined = big & np.isfinite(tau)
            cell_taus = tau[defined]
            psi = float(cell_taus.mean()) if cell_taus.size >= min_cells else None
            note = None
            if not varying.any():
                note = f"no two configurations differ only in {iv.name}; ψ is undefined"
            elif not big.any():
                note = (f"not enough runs: every cell of {iv.name} holds fewer than {min_configs} configurations "
                        f"(largest: {int(sizes.max())}); lower --min-configs")
            elif not defined.any():
                note = f"{measure} or {target} is constant in every cell of {iv.name}"
            elif psi is None:
                note = (f"not enough cells: {cell_taus.size} cell(s) of {iv.name} have a defined τ, fewer than "
                        f"{min_cells} (below {min_cells} cells a unanimous sign is not significant); vary the other "
                        "hyperparameters over more values")
            all_taus.append(cell_taus)
            rows.append(
                {"measure": measure, "target": target, "axis": iv.name, "psi": psi, "n_cells": int(defined.sum()),
                 "n_cells_undefined": int((big & ~defined).sum()), "n_cells_small": int((varying & ~big).sum()),
                 "n_points": int(sizes[big].sum()), **psi_uncertainty(cell_taus, confidence, psi is not None),
                 "note": note}
            )
            if psi is not None:
                psis.append(psi)
        axis_rows = rows[-len(found) :]
        pooled = psi_uncertainty(np.concatenate(all_taus) if all_taus else np.empty(0), confidence, False)
        rows.append(
            {"measure": measure, "target": target, "axis": ALL, "psi": float(np.mean(psis)) if psis else None,
             "n_cells": sum(r["n_cells"] for r in axis_rows), "n_cells_undefined": sum(r["n_cells_undefined"] for r in axis_rows),
             "n_cells_small": sum(r["n_cells_small"] for r in axis_rows),
             "n_points": x.size, **pooled, "note": None if psis else "no intervention has a defined ψ"}
        )
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def psi_uncertainty(cell_taus: np.ndarray, confidence: float, with_ci: bool) -> dict:
    """n_positive, n_negative, the two-sided sign test and (``with_ci``) the CI of the mean (module docstring)."""
    pos, neg = int((cell_taus > 0).sum()), int((cell_taus < 0).sum())
    out = {"n_positive": pos, "n_negative": neg, "sign_p": None, "psi_ci_low": None, "psi_ci_high": None}
    if pos + neg:
        out["sign_p"] = sign_test_p(pos, pos + neg)
    k = cell_taus.size
    if not with_ci or k < 2:
        return out
    if np.isin(cell_taus, (-1.0, 0.0, 1.0)).all():
        if pos + neg == 0:
            out["psi_ci_low"] = out["psi_ci_high"] = 0.0
            return out
        low, high = sign_share_interval(pos, pos + neg, confidence)
        scale = (pos + neg) / k
        out["psi_ci_low"], out["psi_ci_high"] = (2 * low - 1) * scale, (2 * high - 1) * scale
    else:
        half = t_quantile(0.5 + confidence / 2, k - 1) * cell_taus.std(ddof=1) / np.sqrt(k)
        out["psi_ci_low"], out["psi_ci_high"] = float(max(-1.0, cell_taus.mean() - half)), float(min(1.0, cell_taus.mean() + half))
    return out


@lru_cache(maxsize=4096)
def sign_test_p(positive: int, total: int) -> float:
    """Two-sided sign test of ``positive`` successes out of ``total`` at ½ (scipy.stats.binomtest), kept per count:
    a report asks for the same few counts once per measure × intervention."""
    return float(stats.binomtest(positive, total, 0.5).pvalue)


@lru_cache(maxsize=4096)
def sign_share_interval(positive: int, total: int, confidence: float) -> tuple[float, float]:
    """Clopper–Pearson interval of the share of positive signs (scipy.stats.binomtest(...).proportion_ci, exact),
    kept per (count, confidence)."""
    ci = stats.binomtest(positive, total, 0.5).proportion_ci(confidence, method="exact")
    return float(ci.low), float(ci.high)
