"""The frames the report renders: their keys in ``write_report``'s ``frames`` mapping and the columns it reads.

Statistics frames come from ``analyze.stats``; data frames (curves, per-sample arrays, costs) are fetched by the CLI.
A frame that is missing, empty or lacks a required column is reported as "not computed" where it would appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import polars as pl


@dataclass(frozen=True)
class FrameSpec:
    key: str
    required: tuple[str, ...]
    source: str


FRAMES: dict[str, FrameSpec] = {
    f.key: f
    for f in (
        FrameSpec("verdict_matrix", ("measure", "family", "intervention", "verdict", "evidence"),
                  "analyze.stats.suite.report_frames (one row per measure × intervention)"),
        FrameSpec("reversal_explanations", ("measure", "sentence"), "analyze.stats.suite.report_frames (pooled relations of the unexpected sign)"),
        FrameSpec("verdict_sentences", ("sentence",), "analyze.stats.suite.report_frames (the verdict in sentences)"),
        FrameSpec("rank", ("measure", "kendall_tau"), "analyze.stats.rank_measures (python -m analyze rank)"),
        FrameSpec("correlations", ("measure", "target", "kendall_tau"), "analyze.stats.correlations (every measure × target)"),
        FrameSpec("partial", ("measure", "covariates", "kendall_tau"), "analyze.stats.partial_correlations (--covariates)"),
        FrameSpec("partial_matrix", ("measure", "control", "kendall_tau"), "analyze.stats.partial_matrix (partial --matrix)"),
        FrameSpec("granulated", ("measure", "axis", "psi"), "analyze.stats.granulated_kendall (python -m analyze granulated)"),
        FrameSpec("sign_error", ("measure", "axis", "mean", "p90", "max"), "analyze.stats.sign_error (python -m analyze sign-error)"),
        FrameSpec("sign_error_envs", ("measure", "axis", "error"), "per-environment sign-errors (one row per kept environment)"),
        FrameSpec("cmi", ("measure", "cmi"), "analyze.stats.conditional_mutual_information (python -m analyze cmi)"),
        FrameSpec("flags", ("flag", "sentence"), "analyze.stats.break_flags (python -m analyze flags)"),
        FrameSpec("flag_coverage", ("axis", "n_tested", "n_untestable"), "analyze.stats.flags.flag_coverage (relationships tested per intervention)"),
        FrameSpec("flag_evidence", ("measure", "axis", "group"), "analyze.stats.flags.evidence_frame (the comparisons behind the flags)"),
        FrameSpec("cost", ("measure", "median_seconds"), "median time.<measure> per run and its ratio to the cheapest"),
        FrameSpec("curves", ("run_id", "metric", "step", "value"), "analyze.ledger.curves (training curves from MLflow)"),
        FrameSpec("per_sample", ("run_id",), "analyze.ledger.load_per_sample (per-sample artifacts, one row per sample)"),
        FrameSpec("per_sample_corr", ("run_id", "versus", "pearson_r"), "analyze.stats.per_sample_correlations"),
    )
}


ALL_TARGETS = ("correlations",)  # frames that keep every target; the others are cut to the report's target


def get(frames: Mapping[str, pl.DataFrame], key: str, target: str | None = None) -> pl.DataFrame | None:
    """The frame under ``key`` if it is present, non-empty and has the columns the report reads; else None.

    With ``target``, a frame with a ``target`` column keeps only that target's rows (``partial`` holds every target).
    """
    spec = FRAMES[key]
    frame = frames.get(key)
    if not isinstance(frame, pl.DataFrame) or frame.height == 0:
        return None
    if any(c not in frame.columns for c in spec.required):
        return None
    if target is not None and key not in ALL_TARGETS and "target" in frame.columns:
        frame = frame.filter(pl.col("target") == target)
        if frame.height == 0:
            return None
    return frame


def why_missing(frames: Mapping[str, pl.DataFrame], key: str, target: str | None = None) -> str:
    """A sentence saying why the frame under ``key`` cannot be shown and what produces it."""
    spec = FRAMES[key]
    frame = frames.get(key)
    if frame is None:
        return f"Not computed: no '{key}' frame was given to the report (it comes from {spec.source})."
    if not isinstance(frame, pl.DataFrame):
        return f"Not computed: the '{key}' frame is a {type(frame).__name__}, not a polars DataFrame."
    if frame.height == 0:
        return f"Not computed: the '{key}' frame has no rows."
    missing = [c for c in spec.required if c not in frame.columns]
    if missing:
        return f"Not shown: the '{key}' frame lacks column(s) {missing} (it should come from {spec.source})."
    if target is not None and key not in ALL_TARGETS and "target" in frame.columns:
        have = sorted(map(str, frame["target"].unique().to_list()))
        return f"Not computed for {target}: the '{key}' frame only has rows for {have}."
    return f"The '{key}' frame could not be shown."
