"""Benjamini–Hochberg false-discovery-rate adjustment over every test in a table or a report.

A raw p-value column is any column whose name ends in ``_p``; its adjusted twin ``<name>_adj`` is added next to it.
All p-values of all given frames form one family (statsmodels' ``multipletests(method="fdr_bh")``); missing
p-values (untestable rows) stay missing and do not count as tests.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import polars as pl
from statsmodels.stats.multitest import multipletests


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values; NaN entries stay NaN and are not counted as tests."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out


def pvalue_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.endswith("_p") and frame.schema[c].is_numeric()]


def adjust_family(frames: Mapping[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Adjust every ``*_p`` column of every frame as one family; returns the frames with ``*_p_adj`` added."""
    pieces: list[tuple[str, str, int]] = []
    values: list[np.ndarray] = []
    for name, frame in frames.items():
        for col in pvalue_columns(frame):
            arr = frame[col].cast(pl.Float64).fill_null(np.nan).to_numpy()
            pieces.append((name, col, arr.size))
            values.append(arr)
    adjusted = benjamini_hochberg(np.concatenate(values)) if values else np.empty(0)
    out = dict(frames)
    start = 0
    for name, col, size in pieces:
        adj = adjusted[start : start + size]
        start += size
        series = pl.Series(f"{col}_adj", [None if np.isnan(v) else float(v) for v in adj], dtype=pl.Float64)
        frame = out[name].with_columns(series)
        cols = [c for c in frame.columns if c != series.name]
        cols.insert(cols.index(col) + 1, series.name)
        out[name] = frame.select(cols)
    return out


def adjust_pvalues(frame: pl.DataFrame) -> pl.DataFrame:
    """One table's p-values adjusted as one family."""
    return adjust_family({"frame": frame})["frame"]
