"""The verdict the report opens with: a measure × intervention matrix, the verdict sentences, the reversals and why.

Renders the frames ``verdict_matrix``, ``verdict_sentences`` and ``reversal_explanations`` (analyze.stats.suite) and
the flags frame; it computes no statistic. Rows of the matrix are grouped by measure family in ``FAMILIES`` order
(``analyze.stats.verdict.FAMILIES``: margins, norms, Hessian trace, λ_max, sharpness, adaptive sharpness, PAC-Bayes,
log volume, spectra, optimization); each cell
says whether the measure's relation to the target *holds*, is *undecided*, *weakens*, *reverses* or was *not testable* when that
intervention moves, with the evidence sentence on hover and, on click, under the chart.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from analyze.report import charts
from analyze.report.data import short
from analyze.report.page import Page, escape, table
from analyze.numbers import finite_or_none
from analyze.stats.verdict import FAMILIES as STATS_FAMILIES
from analyze.report.blocks import INFO_FLAGS, Inputs, ci_text, direction_phrase, missing, note, strength

FAMILIES = tuple(STATS_FAMILIES)
VERDICT_TEXT = {"holds": "holds", "undecided": "undecided", "weakens": "weakens", "reverses": "reverses",
                "not_testable": "not testable"}
# "holds" of a pooled relation that is itself reversed, or not significant, must not read as a green success.
HOLDS_AS = {"reversed": "stays reversed", "none": "no pooled relation", "unknown": "direction unknown"}
MAX_REVERSALS_SHOWN = 6  # reversal sentences shown open (explained first, then intervals excluding 0); the rest folded
EVIDENCE_ID = "verdict-evidence"  # the element a click on a matrix cell writes its evidence into


def matrix_rows(matrix: pl.DataFrame) -> list[dict[str, Any]]:
    """One chart row per (measure, intervention), families in ``FAMILIES`` order, measures by ``sort_key`` inside."""
    fam_order = {f: i for i, f in enumerate(FAMILIES)}
    m = matrix.with_columns(
        pl.col("family").cast(pl.Utf8).fill_null("other"),
        pl.col("family").cast(pl.Utf8).replace_strict(fam_order, default=len(FAMILIES), return_dtype=pl.Int64).alias("_f"),
        (pl.col("sort_key") if "sort_key" in matrix.columns else pl.lit(0)).alias("_k"),
    ).sort(["_f", "_k", "measure"], nulls_last=True, maintain_order=True)
    rows = []
    for r in m.iter_rows(named=True):
        v = str(r["verdict"])
        tau = finite_or_none(r.get("tau_pooled"))
        shown = VERDICT_TEXT.get(v, v)
        if v == "holds" and r.get("pooled_relation") in HOLDS_AS:  # what holds is a reversal, or no relation at all
            shown = HOLDS_AS[r["pooled_relation"]]
        rows.append({
            "family": r["family"],
            "measure": short(str(r["measure"])),
            "intervention": str(r["intervention"]),
            "verdict": shown,
            "pooled": "" if tau is None else f"{tau:+.3f}",
            "within": "" if r.get("tau_within") is None else str(r["tau_within"]),
            "n": r.get("n_runs"),
            "evidence": "" if r.get("evidence") is None else str(r["evidence"]),
        })
    return rows


def matrix(inp: Inputs, page: Page) -> str:
    """The measure × intervention matrix, or why it is missing."""
    frame = inp.frame("verdict_matrix")
    if frame is None:
        return missing(inp.why("verdict_matrix"))
    rows = matrix_rows(frame)
    n_measures = len({r["measure"] for r in rows})
    n_interventions = len({r["intervention"] for r in rows})
    spec = charts.verdict_matrix(rows, title=f"Does each measure's relation to {short(inp.target)} survive each intervention?",
                                 evidence_target=EVIDENCE_ID)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in charts.VERDICT_COLOURS}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    return (
        page.add_chart(spec, label="verdict matrix")
        + f"<p id='{EVIDENCE_ID}' class='evidence'>Hover over a cell for its evidence; click it to keep the evidence here.</p>"
        + note(f"{n_measures} measure(s) × {n_interventions} intervention(s): {summary}. Each cell follows the evidence "
               "along that intervention (section Flags; every pair of levels is compared): reverses — a sign or Simpson "
               "reversal was flagged, or two levels have τ intervals excluding 0 on opposite sides; weakens — a weakening "
               "or decoupling was flagged; undecided — nothing was flagged but τ lacks the expected sign in some level "
               "(neither a hold nor a shown break); holds — τ has the expected sign in "
               "every level with enough runs and nothing was flagged (stays reversed — and the pooled relation has the sign the literature does not "
               "expect; no pooled relation — and the pooled τ's interval contains 0, so there was nothing to lose; direction "
               "unknown — no expected sign is registered for the measure or the target, so the pooled τ is shown as it is); "
               "not testable — fewer than two levels had enough runs to compare. Diagnostics (standard "
               "errors, HVP counts, convergence) are not measures and are not in the matrix.")
    )


def sentences(inp: Inputs) -> str:
    frame = inp.frame("verdict_sentences")
    if frame is None:
        return missing(inp.why("verdict_sentences"))
    from analyze.report.comparison import verdict_items  # untestable levels and detectable effects

    items = "".join(f"<li>{escape(s)}</li>" for s in frame["sentence"].to_list() + verdict_items(inp) if s)
    return f"<ol class='verdict' id='verdict-sentences'>{items}</ol>"


def reversals(inp: Inputs) -> str:
    """Each pooled relation of the unexpected sign, with the intervention that explains it (or 'unexplained')."""
    frame = inp.frame("reversal_explanations")
    if frame is None:
        rank = inp.frame("rank")
        if rank is not None and "reversed" in rank.columns and rank.filter(pl.col("reversed").fill_null(False)).height:
            return missing(inp.why("reversal_explanations") + " Reversed measures are marked in the ranking.")
        return ""
    explained = frame.filter(pl.col("explained_by").is_not_null()) if "explained_by" in frame.columns else frame.head(0)
    head = (f"<p class='flag'><b>{frame.height} measure(s) relate to {escape(short(inp.target))} with the sign the literature "
            f"does not expect</b>; {explained.height} of them are explained by an intervention:</p>")
    def clear(r: dict) -> bool:  # explained, or an interval that excludes 0: shown first
        lo, hi = finite_or_none(r.get("ci_low")), finite_or_none(r.get("ci_high"))
        return bool(r.get("explained_by")) or (lo is not None and hi is not None and (lo > 0 or hi < 0))

    rows = sorted(frame.iter_rows(named=True), key=lambda r: (not r.get("explained_by"), not clear(r)))
    lead = [r for r in rows if clear(r)][:MAX_REVERSALS_SHOWN] or rows[:MAX_REVERSALS_SHOWN]
    rest = [r for r in rows if r not in lead]

    def item(r: dict) -> str:
        cls = "" if r.get("explained_by") else " class='flag'"
        return f"<li{cls}>{escape(r['sentence'])}</li>"

    html = head + f"<ul class='verdict' id='reversal-explanations'>{''.join(item(r) for r in lead)}</ul>"
    if rest:
        n_clear = sum(clear(r) for r in rest)
        html += (f"<details><summary>{len(rest)} more reversal(s) ({n_clear} with an interval that excludes 0)</summary>"
                 f"<ul class='verdict'>{''.join(item(r) for r in rest)}</ul></details>")
    return html


def flag_summary(inp: Inputs) -> tuple[str, str]:
    """(sentences about the flags, a table of the first breaks). 'No break was flagged' only when something was tested."""
    flags, raw = inp.frame("flags"), inp.frames.get("flags")
    if flags is None and isinstance(raw, pl.DataFrame) and raw.height == 0 and "flag" in raw.columns:
        flags = raw  # no flag raised at all: a finding only if something was tested (below)
    if flags is None:
        return missing(inp.why("flags")), ""
    is_info = pl.col("flag").cast(pl.Utf8).is_in(list(INFO_FLAGS))
    breaks, info = flags.filter(~is_info), flags.filter(is_info)
    coverage = inp.frame("flag_coverage")
    if coverage is not None:
        n_tested, n_untested = int(coverage["n_tested"].sum()), int(coverage["n_untestable"].sum())
        what = "measure × intervention relationship(s)"
    else:
        evidence = inp.frame("flag_evidence")
        n_tested, n_untested = (evidence.height if evidence is not None else None), info.height
        what = "measure × group comparison(s)"
    untested = (f"<p class='note'>{n_untested} relationship(s) were not tested because a group had too few runs "
                "(flag too_small; see the flags table).</p>") if n_untested else ""
    if breaks.height == 0:
        if n_tested == 0:
            return (f"<p class='missing'>No relationship could be tested for a break: every group had too few runs "
                    f"({n_untested} untested). More seeds or more levels per intervention (for example "
                    "<code>python -m collect --seeds 0-2</code>) would make them testable.</p>"), ""
        if n_tested is None:
            return ("<p>No break was flagged, but the report was not told how many relationships were tested "
                    "(no flag_coverage or flag_evidence frame), so this is not evidence that none breaks.</p>") + untested, ""
        return f"<p class='good'>No break was flagged among the {n_tested} {what} tested.</p>" + untested, ""
    sentences = breaks["sentence"].to_list()
    kinds = breaks["flag"].cast(pl.Utf8).value_counts(sort=True)
    summary = ", ".join(f"{n} × {escape(k)}" for k, n in kinds.iter_rows())
    shown = "".join(f"<li>{escape(s)}</li>" for s in sentences[:8])
    more = f"<p class='note'>{len(sentences) - 8} more in the flags table.</p>" if len(sentences) > 8 else ""
    html = f"<p class='flag'><b>{breaks.height} break(s) flagged</b> ({summary}):</p><ul class='verdict'>{shown}</ul>{more}{untested}"
    numbers = [c for c in ("flag", "measure", "group", "n_group", "r_group", "r_reference", "p_adj") if c in breaks.columns]
    head = breaks.head(8).select(numbers)
    if "measure" in numbers:
        head = head.with_columns(pl.col("measure").cast(pl.Utf8).map_elements(short, return_dtype=pl.Utf8))
    return html, table(head, sortable=False)


def strongest(inp: Inputs, top: int = 3) -> tuple[str, str]:
    """The measures with the largest pooled |τ| (sentences, table): what the ranking says before any intervention."""
    rank = inp.frame("rank")
    if rank is None:
        return missing(inp.why("rank")), ""
    conf = inp.meta.get("confidence")
    conf_text = f"{float(conf) * 100:g}% CI" if conf is not None else "CI"
    best = rank.filter(pl.col("kendall_tau").is_not_null() & pl.col("kendall_tau").is_finite()).head(top)
    if best.height == 0:
        return "<p>No measure has a defined Kendall τ with the target (see the notes in the ranking).</p>", ""
    items = []
    for r in best.iter_rows(named=True):
        tau = float(r["kendall_tau"])
        ci = ci_text(r.get("kendall_ci_low"), r.get("kendall_ci_high"))
        items.append(
            f"<li><b>{escape(short(r['measure']))}</b>: {strength(tau)} {'positive' if tau > 0 else 'negative'} τ with "
            f"<code>{escape(inp.target)}</code>, {direction_phrase(r)}. "
            f"<span class='num-aside'>τ = {tau:+.3f}{' ' + escape(conf_text + ' ' + ci) if ci else ''}, n = {escape(r.get('n'))}</span></li>"
        )
    cols = [c for c in ("rank", "measure", "n", "kendall_tau", "kendall_ci_low", "kendall_ci_high", "direction") if c in rank.columns]
    aside = table(best.select(cols).with_columns(pl.col("measure").map_elements(short, return_dtype=pl.Utf8)), sortable=False)
    return f"<p>Strongest pooled correlations (all runs together):</p><ul class='verdict'>{''.join(items)}</ul>", aside


def verdict(inp: Inputs, page: Page) -> str:
    """Matrix first, then the verdict sentences and reversals, then the pooled ranking's top and the flags."""
    top_html, top_aside = strongest(inp)
    flag_html, flag_aside = flag_summary(inp)
    return (
        matrix(inp, page)
        + sentences(inp)
        + reversals(inp)
        + f"<div class='side'><div>{top_html}</div><div>{top_aside}</div></div>"
        + f"<div class='side'><div>{flag_html}</div><div>{flag_aside}</div></div>"
    )
