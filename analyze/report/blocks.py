"""What every report section is handed (``Inputs``) and the small HTML pieces sections share.

The sections (``sections``, ``paper``, ``verdict``, ``comparison``) import from here and never from each other, so
the report's modules form a tree: ``sections`` lists them all, each renders from the inputs passed down to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import polars as pl

from analyze.numbers import finite_or_none
from analyze.report.data import MAX_POINTS
from analyze.report.frames import get, why_missing
from analyze.report.page import escape
from collect.mlflow_ui import run_url

INFO_FLAGS = ("too_small",)  # flags that say a relationship was not tested, not that it breaks
CANVAS_ABOVE = 6000  # marks beyond which a chart draws on canvas instead of SVG


@dataclass(frozen=True)
class Inputs:
    """Everything a section may read."""

    ledger: pl.DataFrame
    done: pl.DataFrame  # FINISHED runs
    frames: Mapping[str, pl.DataFrame]
    meta: Mapping[str, Any]
    target: str
    mlflow_ui: str | None
    max_points: int = MAX_POINTS
    seed: int = 0

    def frame(self, key: str) -> pl.DataFrame | None:
        """The frame under ``key`` (rows of the report's target only), or None when it cannot be shown."""
        return get(self.frames, key, self.target)

    def why(self, key: str) -> str:
        return why_missing(self.frames, key, self.target)

    def run_url(self, run_id: Any) -> str | None:
        if not self.mlflow_ui or run_id is None:
            return None
        return run_url(self.mlflow_ui, run_id)


def missing(text: str) -> str:
    return f"<p class='missing'>{escape(text)}</p>"


def note(text: str) -> str:
    return f"<p class='note'>{escape(text)}</p>" if text else ""


def renderer_for(n_marks: int) -> str:
    return "canvas" if n_marks > CANVAS_ABOVE else "svg"


def ci_text(lo: Any, hi: Any) -> str:
    """The interval as "[lo, hi]" to two decimals, or "" when either bound is missing."""
    lo, hi = finite_or_none(lo), finite_or_none(hi)
    return f"[{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""


def strength(tau: float) -> str:
    a = abs(tau)
    return "negligibly" if a < 0.1 else "weakly" if a < 0.3 else "moderately" if a < 0.5 else "strongly"


def direction_phrase(row: Mapping[str, Any]) -> str:
    d = row.get("direction")
    if d == "as expected":
        return "<span class='good'>in the direction the literature expects</span>"
    if d == "reversed":
        sig = " — significantly" if row.get("reversal_significant") else " (not significantly)"
        return f"<span class='flag'>opposite to the direction the literature expects{sig}</span>"
    if d in ("unknown", "none"):
        return "(direction unknown: no expected sign is registered for this measure and target)" if d == "unknown" else "with no sign"
    return ""
