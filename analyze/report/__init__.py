"""The HTML report: renders the frames the statistics produced (it computes no statistic itself).

``write_report(ledger, frames, meta, out)`` writes one self-contained file answering "which measures predict
generalization here, and where do they break?": header, verdict, ranking, per-measure panels, granulated Kendall,
sign-error, partial correlations, flags, paper-specific views, training curves, cost and runs (``sections``).
The frame keys and columns it reads are listed in ``analyze.report.frames.FRAMES``.
``log_report_to_mlflow(path, tracking_uri, experiment)`` attaches the file to the experiment's parent run.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import polars as pl

from analyze.columns import DEFAULT_TARGET
from analyze.report.data import MAX_POINTS
from analyze.report.frames import FRAMES
from analyze.report.mlflow_log import log_report_to_mlflow
from analyze.report.page import Page, escape
from analyze.report.sections import SECTIONS, Inputs, resolve_sections

DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"  # where `mlflow ui` listens by default

__all__ = ["FRAMES", "SECTIONS", "log_report_to_mlflow", "mlflow_ui_url", "render", "write_report"]


def mlflow_ui_url(meta: Mapping[str, Any]) -> str | None:
    """Base URL of the MLflow UI for run links: ``meta['mlflow_ui']``, else an http(s) tracking URI, else the local
    default for a store on disk; None for a ledger read from a file (its run ids are not MLflow runs)."""
    if meta.get("mlflow_ui"):
        return str(meta["mlflow_ui"])
    uri = meta.get("tracking_uri")
    if uri and str(uri).startswith(("http://", "https://")):
        return str(uri)
    if meta.get("ledger_path"):
        return None
    return DEFAULT_MLFLOW_UI


def render(
    ledger: pl.DataFrame,
    frames: Mapping[str, pl.DataFrame],
    meta: Mapping[str, Any],
    *,
    sections: Sequence[str] | None = None,
    max_points: int = MAX_POINTS,
    seed: int = 0,
) -> str:
    """The report as one HTML string."""
    names = resolve_sections(sections if sections is not None else meta.get("sections"))
    done = ledger.filter(pl.col("status") == "FINISHED") if "status" in ledger.columns else ledger
    inp = Inputs(
        ledger=ledger,
        done=done,
        frames=dict(frames),
        meta=dict(meta),
        target=str(meta.get("target") or DEFAULT_TARGET),
        mlflow_ui=mlflow_ui_url(meta),
        max_points=max_points,
        seed=seed,
    )
    page = Page(title=f"flatlas: {meta.get('experiment') or 'report'}")
    for name in names:
        title, fn = SECTIONS[name]
        n_charts = len(page.charts)
        try:
            body = fn(inp, page)
        except Exception as exc:  # one malformed frame must not cost the whole report; the page says what failed
            del page.charts[n_charts:]
            warnings.warn(f"report section {name!r} failed: {type(exc).__name__}: {exc}", stacklevel=2)
            body = f"<p class='missing'>This section failed to render: {escape(type(exc).__name__)}: {escape(exc)}</p>"
        if body:
            page.add_section(name, title, body)
    return page.render()


def write_report(
    ledger: pl.DataFrame,
    frames: Mapping[str, pl.DataFrame],
    meta: Mapping[str, Any],
    out: Path,
    *,
    sections: Sequence[str] | None = None,
    max_points: int = MAX_POINTS,
    seed: int = 0,
) -> Path:
    """Render and write the report to ``out`` (parent folders created); returns the path.

    ``sections`` (default ``meta['sections']``, else all) picks sections by name (see ``SECTIONS``); scatters with
    more than ``max_points`` runs show a seeded random sample and say so.
    """
    out = Path(out)
    text = render(ledger, frames, meta, sections=sections, max_points=max_points, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
