"""Per-sample analysis (paper 000, "On Flat Minima, Large Margins and Generalizability", §4 and Fig. 2–3):
Pearson r of the per-sample Hessian trace with ACEHT and with the margin bound, on correctly classified training
points, before and after removing outliers with scikit-learn's LocalOutlierFactor.

Input is a mapping run_id → per-sample frame (columns ``trace``, ``aceht``, ``margin_bound``, ``correct`` and
optionally ``step`` for curves along training), as ``analyze.ledger.load_per_sample`` returns it; this module never
touches MLflow. LOF runs on the two columns standardised (it is distance-based and trace and ACEHT live on
different scales).
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
import polars as pl
from scipy import stats

from analyze.stats._data import StatsError

VERSUS = ("aceht", "margin_bound")
SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.Utf8,
    "step": pl.Int64,
    "versus": pl.Utf8,
    "n_correct": pl.Int64,
    "pearson_r": pl.Float64,
    "pearson_p": pl.Float64,
    "n_outliers": pl.Int64,
    "pearson_r_lof": pl.Float64,
    "pearson_lof_p": pl.Float64,
    "note": pl.Utf8,
}


def lof_inliers(points: np.ndarray, n_neighbors: int = 20) -> np.ndarray:
    """Boolean mask of the points LocalOutlierFactor keeps (standardised columns, contamination 'auto')."""
    from sklearn.neighbors import LocalOutlierFactor

    sd = points.std(axis=0)
    z = (points - points.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    k = max(1, min(n_neighbors, points.shape[0] - 1))
    return LocalOutlierFactor(n_neighbors=k).fit_predict(z) == 1


def per_sample_correlations(
    per_sample: Mapping[str, pl.DataFrame],
    *,
    versus: Sequence[str] = VERSUS,
    lof: bool = True,
    n_neighbors: int = 20,
) -> pl.DataFrame:
    """One row per run × step × compared quantity: Pearson r (and p) with and without LOF outlier removal."""
    rows: list[dict] = []
    for run_id, frame in per_sample.items():
        missing = [c for c in ("trace", "correct") if c not in frame.columns]
        if missing:
            raise StatsError(f"per-sample artifact of run {run_id}: no column(s) {missing}; expected trace, aceht, margin_bound, correct")
        steps = frame.partition_by("step", maintain_order=True) if "step" in frame.columns else [frame]
        for part in steps:
            step = int(part["step"][0]) if "step" in part.columns else None
            correct = part.filter(pl.col("correct").cast(pl.Boolean))
            for other in versus:
                if other not in part.columns:
                    continue
                rows.append(_row(run_id, step, other, correct, lof, n_neighbors))
    return pl.DataFrame(rows, schema=SCHEMA, orient="row") if rows else pl.DataFrame(schema=SCHEMA)


def _row(run_id: str, step: int | None, other: str, correct: pl.DataFrame, lof: bool, n_neighbors: int) -> dict:
    xy = correct.select(pl.col("trace").cast(pl.Float64), pl.col(other).cast(pl.Float64)).to_numpy()
    xy = xy[np.isfinite(xy).all(axis=1)]
    row = {"run_id": run_id, "step": step, "versus": other, "n_correct": int(xy.shape[0]), "pearson_r": None,
           "pearson_p": None, "n_outliers": None, "pearson_r_lof": None, "pearson_lof_p": None, "note": None}
    if xy.shape[0] < 3 or np.ptp(xy[:, 0]) == 0 or np.ptp(xy[:, 1]) == 0:
        row["note"] = f"{xy.shape[0]} correctly classified points with finite values, or a constant column; r is undefined"
        return row
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.pearsonr(xy[:, 0], xy[:, 1])
        row["pearson_r"], row["pearson_p"] = float(res.statistic), float(res.pvalue)
        if lof:
            keep = lof_inliers(xy, n_neighbors)
            row["n_outliers"] = int((~keep).sum())
            kept = xy[keep]
            if kept.shape[0] >= 3 and np.ptp(kept[:, 0]) > 0 and np.ptp(kept[:, 1]) > 0:
                res = stats.pearsonr(kept[:, 0], kept[:, 1])
                row["pearson_r_lof"], row["pearson_lof_p"] = float(res.statistic), float(res.pvalue)
    return row
