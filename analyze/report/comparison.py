"""The report's "Comparison point" section and its verdict sentences: which runs the statistics compare, which
intervention levels could not be tested there, and how large an effect on the target the design could detect.

Renders ``meta["comparison"]`` (``analyze.comparison.Selection.to_dict``) and the ``detectable_effect`` frame
(``analyze.stats.power.detectable_effects``); it computes no statistic.
"""

from __future__ import annotations

from typing import Any, Mapping

import polars as pl

from analyze.report.page import Page, escape, table
from analyze.report.blocks import Inputs, note
from analyze.stats.power import design_sentences

DETECTABLE = "detectable_effect"


def _selection(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    comp = meta.get("comparison")
    return comp if isinstance(comp, Mapping) else {}


def _effects(inp: Inputs) -> pl.DataFrame | None:
    frame = inp.frames.get(DETECTABLE)
    if not isinstance(frame, pl.DataFrame) or frame.height == 0 or "mde" not in frame.columns:
        return None
    if "target" in frame.columns:
        frame = frame.filter(pl.col("target") == inp.target)
    return frame if frame.height else None


def summary(comp: Mapping[str, Any]) -> str:
    """One sentence: which runs enter the statistics and which were left out."""
    mode, runs = comp.get("mode"), comp.get("runs") or {}
    point = f"the target ({comp['label']})" if comp.get("label") else "the sweep's training target"
    if mode == "target":
        return (f"Runs are compared at {point}: {runs.get('kept')} of {runs.get('finished')} finished runs reached it "
                f"and enter every statistic; {runs.get('missed_target')} that missed it and {runs.get('not_learned')} "
                "that did not learn (train.learned = 0) are left out.")
    if mode == "all_runs":
        return (f"--all-runs: {runs.get('kept')} finished runs are pooled although {runs.get('missed_target')} of them "
                f"missed {point}; how far training got then moves the gap by itself (Jiang et al. 2020 compare runs "
                f"at one target). {runs.get('not_learned')} run(s) that did not learn are left out.")
    if mode == "budget":
        budget = f" ({comp['label']})" if comp.get("label") else ""
        return (f"Runs are compared at a fixed budget{budget}: {runs.get('kept')} of {runs.get('finished')} finished "
                f"runs enter the statistics; {runs.get('not_learned')} that did not learn (train.learned = 0) are left out.")
    return ("The ledger does not say where the runs were compared (no train.converged or train.learned column): "
            "every finished run is analysed.")


def not_testable_sentence(comp: Mapping[str, Any]) -> str | None:
    """"Not testable at the comparison point: dropout = 0.5 (2 of 20 runs reached the target; ...)." or None."""
    bad = list(comp.get("not_testable") or [])
    if not bad:
        return None
    shown = "; ".join(bad[:6]) + (f"; and {len(bad) - 6} more" if len(bad) > 6 else "")
    return (f"{len(bad)} intervention level(s) are not testable at the comparison point (fewer than "
            f"{comp.get('min_at_target')} runs remain): {shown}.")


def verdict_items(inp: Inputs) -> list[str]:
    """Sentences the verdict adds after its own: the untestable levels, then the detectable effect per intervention
    and why a non-significant difference is undecided rather than absent."""
    out = []
    sentence = not_testable_sentence(_selection(inp.meta))
    if sentence:
        out.append(sentence)
    alpha = inp.meta.get("alpha")
    power = inp.meta.get("power")
    kwargs = {k: float(v) for k, v in (("alpha", alpha), ("power", power)) if v is not None}
    return out + design_sentences(_effects(inp), **kwargs)


def comparison(inp: Inputs, page: Page) -> str:
    """Which runs enter the statistics, per intervention level, and the detectable effect of each level."""
    comp = _selection(inp.meta)
    if not comp:
        return ""
    cls = "flag" if comp.get("mode") == "all_runs" else ""
    parts = [f"<p class='{cls}'>{escape(summary(comp))}</p>" if cls else f"<p>{escape(summary(comp))}</p>"]
    bad = not_testable_sentence(comp)
    if bad:
        parts.append(f"<p class='flag'>{escape(bad)}</p>")
    levels = comp.get("levels") or []
    if levels:
        frame = pl.DataFrame(levels).select(
            pl.col("intervention"), pl.col("level"), pl.col("n_runs").alias("finished"),
            pl.col("n_kept").alias("analysed"), pl.col("n_missed").alias("missed target"),
            pl.col("n_not_learned").alias("did not learn"),
            pl.when(pl.col("testable")).then(pl.lit("yes")).otherwise(pl.lit("no")).alias("testable"))
        if not bad and comp.get("mode") in ("target", "budget"):
            parts.append(note(f"Every one of the {len(levels)} intervention level(s) keeps at least "
                              f"{comp.get('min_at_target')} runs at the comparison point."))
        parts.append(table(frame, sortable=False))
    effects = _effects(inp)
    if effects is not None:
        shown = effects.select([c for c in ("intervention", "level", "reference", "n_level", "n_reference", "mde", "diff",
                                            "ci_low", "ci_high", "decision") if c in effects.columns])
        parts.append("<h3>Detectable effect per intervention level</h3>")
        parts.append("".join(f"<p>{escape(s)}</p>" for s in design_sentences(effects)))
        parts.append(table(shown, sortable=False))
        parts.append(note("mde: the smallest difference level − reference in the target that a two-sided t-test at "
                          "α = 0.05 detects with power 0.8, from the runs per level (matched by the other "
                          "hyperparameters), the seed-to-seed spread and the test set's binomial noise "
                          "(docs/statistics.md). A difference that is not significant is undecided, not absent."))
    elif DETECTABLE in inp.frames or comp:
        why = next((n for n in inp.meta.get("notes") or [] if str(n).startswith(DETECTABLE)), None)
        if why:
            parts.append(note(f"Detectable effect not computed: {why.removeprefix(DETECTABLE + ': ')}"))
    return "".join(parts)
