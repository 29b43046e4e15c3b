"""The report's sections: each takes the inputs and the page, renders frames the statistics produced, returns HTML.

A section whose frame is missing says "not computed" in place; nothing here computes a statistic. Sentences in the
verdict are built from the numbers in the ranking and flags frames, word for word.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Mapping, Sequence

import polars as pl

from analyze.columns import DIAG, HP, TIME, measure_columns
from analyze.columns import MEASURE as MEASURE_PREFIX
from analyze.ledger import ledger_hash
from analyze.report import charts
from analyze.report.data import (
    CURVE_LABELS,
    field_keys,
    finite_values,
    group_labels,
    groupings,
    label,
    records,
    sample,
    short,
    spans_decades,
)
from analyze.numbers import finite_or_none
from collect.mlflow_ui import experiment_url
from analyze.report.blocks import INFO_FLAGS, Inputs, missing, note, renderer_for
from analyze.report.comparison import comparison
from analyze.report.page import Page, escape, fmt_number, table
from analyze.report.paper import paper_views
from analyze.report.verdict import verdict

MAX_PANELS = 12  # per-measure scatter panels drawn (best-ranked first); the ranking lists every measure
MAX_CDF_MEASURES = 6  # sign-error CDF lines per axis
MAX_MATRIX = 10  # measures (rows and controls) in the partial-correlation matrix drawn
MAX_CURVE_RUNS = 60  # training curves drawn per chart (a seeded sample beyond that)
MAX_CURVE_POINTS = 5_000  # curve points drawn; longer curves keep every k-th evaluation (1.5 MB of page at 11,000)
CURVE_BOOKKEEPING = ("epoch", "swa")  # logged with the curves, but counters rather than quantities to plot
# Bookkeeping outputs of measures (standard errors, iteration counts, convergence flags) are not panels.
DIAGNOSTIC_SUFFIXES = ("_se", "_n_hvp", "_converged", "_residual", "_at", "_n_correct")
ALL_AXES = "ALL"
# The flatness measures the toolkit exists for: drawn whenever the sweep computed them, not only when they rank high.
MISSION = ("hessian_trace", "lambda_max", "sharpness", "pacbayes_flatness", "pacbayes_mag_flatness", "log_volume")
MIN_CELL_CONFIGS = 3  # granulated Kendall: a cell needs this many configurations for a τ worth showing




def ranked_measures(inp: Inputs) -> list[str]:
    """Measure columns, best-ranked first when a ranking exists (else in ledger order)."""
    rank = inp.frame("rank")
    present = [m for m in measure_columns(inp.done.columns) if finite_values(inp.done, m).len() > 0]
    if rank is None:
        return present
    order = [m for m in rank["measure"].to_list() if m in present]
    return order + [m for m in present if m not in order]


def featured_measures(inp: Inputs, limit: int) -> list[str]:
    """The measures a chart draws: every flatness measure the mission names that the sweep computed (``MISSION``),
    then the best-ranked others, ``limit`` in all (more when the mission's measures alone exceed it)."""
    measures = [m for m in ranked_measures(inp) if not short(m).endswith(DIAGNOSTIC_SUFFIXES)]
    mission = [m for m in (f"measure.{k}" for k in MISSION) if m in measures]
    rest = [m for m in measures if m not in mission]
    return mission + rest[: max(0, limit - len(mission))]


def diagnostics_of(measure: str, columns: Sequence[str]) -> list[str]:
    """The ``diag.*`` columns of a measure: those named after it (``diag.hessian_trace_se`` for hessian_trace),
    each given to the longest measure name it starts with."""
    names = [short(c) for c in columns if c.startswith(MEASURE_PREFIX)]
    out = []
    for d in (c for c in columns if c.startswith(DIAG)):
        owners = [n for n in names if short(d).startswith(n + "_")]
        if owners and max(owners, key=len) == short(measure):
            out.append(d)
    return out


def rank_rows(inp: Inputs) -> dict[str, dict[str, Any]]:
    rank = inp.frame("rank")
    return {} if rank is None else {r["measure"]: r for r in rank.iter_rows(named=True)}


# --- header ------------------------------------------------------------------------------------------------------


def header(inp: Inputs, page: Page) -> str:
    """Experiment, runs by status, interventions and their values, targets, command, hash, version, store."""
    from analyze import __version__

    meta, ledger = inp.meta, inp.ledger
    statuses: dict[str, int] = {}
    if "status" in ledger.columns:
        for row in ledger.group_by("status").len().sort("status").iter_rows(named=True):
            statuses[str(row["status"])] = int(row["len"])
    runs_meta = meta.get("runs") or {}
    parts = [f"{statuses.get('FINISHED', 0)} finished"] + [f"{n} {escape(s.lower())}" for s, n in statuses.items() if s != "FINISHED"]
    if "skipped" in runs_meta:
        parts.append(f"{int(runs_meta['skipped'])} skipped (finished in an earlier invocation)")
    varied = [c for c in ledger.columns if c.startswith(HP) and ledger[c].drop_nulls().cast(pl.Utf8).n_unique() > 1]
    interventions = []
    for c in varied:
        values = sorted(ledger[c].drop_nulls().unique().to_list(), key=lambda v: (isinstance(v, str), v))
        shown = ", ".join(escape(v) for v in values[:12]) + (f", … ({len(values)} values)" if len(values) > 12 else "")
        interventions.append(f"<li><b>{escape(short(c))}</b> ∈ {{{shown}}}</li>")
    targets = list(meta.get("targets") or [])
    target_text = ", ".join(f"<code>{escape(t)}</code>" + (" (ranked)" if t == inp.target else "") for t in targets) or f"<code>{escape(inp.target)}</code>"
    source = meta.get("ledger_path") or meta.get("tracking_uri") or "MLflow store (default tracking URI)"
    settings = []
    for key, text in (("resamples", "bootstrap resamples"), ("confidence", "confidence"), ("alpha", "α (after Benjamini–Hochberg)"), ("seed", "seed")):
        if meta.get(key) is not None:
            settings.append(f"{text} {escape(meta[key])}")
    links = ""
    store = meta.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///data/mlflow.db"
    if inp.mlflow_ui:
        exp_id = meta.get("experiment_id")
        where = experiment_url(inp.mlflow_ui, exp_id) if exp_id is not None else inp.mlflow_ui
        links = (
            f"<p class='note'>Run ids link to the MLflow UI at <a href='{escape(where)}'>{escape(inp.mlflow_ui)}</a> "
            f"(start it with <code>mlflow ui --backend-store-uri {escape(store)}</code>).</p>"
        )
    notes = "".join(f"<li>{escape(n)}</li>" for n in meta.get("notes") or [])
    warned = "".join(f"<li>{escape(w)}</li>" for w in meta.get("warnings") or [])
    return (
        f"<h1>flatlas report: {escape(meta.get('experiment') or '(unnamed ledger)')}</h1>"
        f"<p><b>{ledger.height} runs</b>: {', '.join(parts)}. Statistics use the finished runs only.</p>"
        + (f"<p>Interventions:</p><ul>{''.join(interventions)}</ul>" if interventions else "<p>Interventions: none varied.</p>")
        + f"<p>Targets: {target_text}.</p>"
        f"<p>Command: <code>{escape(meta.get('command') or '(not recorded)')}</code></p>"
        f"<p class='note'>Ledger hash {escape(ledger_hash(ledger))} · flatlas {escape(__version__)} · source {escape(source)}"
        + (f" · {', '.join(settings)}" if settings else "")
        + "</p>"
        + links
        + (f"<p class='flag'><b>Read this before the verdict:</b></p><ul class='flag'>{warned}</ul>" if warned else "")
        + (f"<p>Notes from the statistics:</p><ul class='note'>{notes}</ul>" if notes else "")
    )


# --- verdict -----------------------------------------------------------------------------------------------------




# --- ranking -----------------------------------------------------------------------------------------------------

COEFFICIENTS = (("kendall_tau", "kendall", "Kendall τ"), ("spearman_rho", "spearman", "Spearman ρ"), ("pearson_r", "pearson", "Pearson r"))


def ranking(inp: Inputs, page: Page) -> str:
    """τ, ρ and r per measure with bootstrap CIs; measures whose sign contradicts the literature marked."""
    rank = inp.frame("rank")
    if rank is None:
        return missing(inp.why("rank"))
    rows = []
    order = 0
    for r in rank.iter_rows(named=True):
        order += 1
        direction = r.get("direction")
        shown = {"as expected": "as expected", "reversed": "reversed"}.get(direction or "", "undefined" if direction == "undefined" else "direction unknown")
        name = short(r["measure"]) + ("  (reversed ⚠)" if direction == "reversed" else "")
        for col, prefix, title in COEFFICIENTS:
            v = finite_or_none(r.get(col))
            if v is None:
                continue
            rows.append(
                {"measure_label": name, "rank": order, "coefficient": title, "value": v,
                 "low": finite_or_none(r.get(f"{prefix}_ci_low")), "high": finite_or_none(r.get(f"{prefix}_ci_high")), "direction": shown}
            )
    parts = []
    if rows:
        parts.append(page.add_chart(charts.ranking_chart(rows, rank.height, short(inp.target)), label="ranking of measures"))
    else:
        parts.append(missing("No measure has a defined correlation with the target."))
    undefined = rank.filter(pl.col("kendall_tau").is_null() | ~pl.col("kendall_tau").is_finite())
    if undefined.height:
        parts.append(note(f"{undefined.height} measure(s) have no defined τ (see the numbered notes under the ranking table)."))
    parts.append(all_targets(inp, page))
    cols = [c for c in rank.columns if c not in ("target",)]
    parts.append("<h3>Ranking table</h3>" + table(rank.select(cols), scroll=True))
    cmi = inp.frame("cmi")
    parts.append("<h3>Conditional mutual information (PGDL scoring)</h3>")
    parts.append(table(cmi.drop([c for c in ("target",) if c in cmi.columns])) if cmi is not None else missing(inp.why("cmi")))
    return "".join(parts)


def all_targets(inp: Inputs, page: Page) -> str:
    """Kendall τ of every measure with every target (the correlations frame), when there is more than one target."""
    corr = inp.frame("correlations")
    if corr is None or corr["target"].n_unique() < 2:
        return ""
    order = {m: i for i, m in enumerate(ranked_measures(inp))}
    corr = corr.with_columns(pl.col("measure").replace_strict(order, default=len(order), return_dtype=pl.Int64).alias("_o")).sort("_o", maintain_order=True)
    rows = []
    for r in corr.iter_rows(named=True):
        tau = finite_or_none(r["kendall_tau"])
        rows.append({"x": short(r["target"]), "y": short(r["measure"]), "value": tau, "text": "—" if tau is None else f"{tau:+.2f}",
                     "tip": f"n = {r.get('n')}" + (f"; {r['note']}" if r.get("note") else "")})
    spec = charts.heatmap(rows, x_title="target", y_title="measure", color_title="Kendall τ",
                          title="Kendall τ of every measure with every target")
    return "<h3>Every target</h3>" + page.add_chart(spec, label="correlations with every target") + note(
        "A good measure of generalization correlates positively with gaps and losses and negatively with test accuracy.")


# --- per-measure panels ------------------------------------------------------------------------------------------


def panel_measures(inp: Inputs) -> list[str]:
    """Every measure that has a panel, mission measures first (diagnostics never: they are not measures)."""
    return featured_measures(inp, len(ranked_measures(inp)))


def panels(inp: Inputs, page: Page) -> str:
    """Each measure against the target, coloured by intervention, a regression line per group, linked brushing.

    The flatness measures of ``MISSION`` the sweep computed are always drawn, then the best-ranked others up to
    ``MAX_PANELS``; each point's tooltip shows the measure's diagnostics (standard error, HVP count, ...)."""
    done = inp.done
    if inp.target not in done.columns:
        return missing(f"The ledger has no column {inp.target}; nothing to plot the measures against.")
    measures = panel_measures(inp)
    if not measures:
        return missing("The ledger has no measure column with finite values.")
    shown = featured_measures(inp, MAX_PANELS)
    rest = [m for m in measures if m not in shown]
    groups = groupings(done)
    data = done.filter(pl.col(inp.target).cast(pl.Float64, strict=False).is_finite())
    data, sampled = sample(data, inp.max_points, inp.seed)
    keys = field_keys("x", len(shown))
    gkeys = field_keys("g", len(groups))
    diags = {m: diagnostics_of(m, done.columns) for m in shown}
    dcols = list(dict.fromkeys(d for ds in diags.values() for d in ds))
    dkeys = dict(zip(dcols, field_keys("d", len(dcols))))
    cols = [pl.col("run_id").cast(pl.Utf8).alias("id"), pl.col(inp.target).cast(pl.Float64).alias("y")]
    cols += [pl.col(m).cast(pl.Float64, strict=False).alias(k) for m, k in zip(shown, keys)]
    cols += [pl.col(d).cast(pl.Float64, strict=False).alias(k) for d, k in dkeys.items()]
    frame = data.select(cols).with_columns([group_labels(data, g).alias(k) for g, k in zip(groups, gkeys)])
    ranks = rank_rows(inp)
    specs = []
    for m, k in zip(shown, keys):
        tau = finite_or_none(ranks.get(m, {}).get("kendall_tau"))
        title = short(m) + (f"  (τ = {tau:+.2f})" if tau is not None else "")
        specs.append({"key": k, "title": label(m), "panel_title": title, "log": spans_decades(finite_values(frame, k)),
                      "tips": [(dkeys[d], short(d)) for d in diags[m]]})
    y_log = spans_decades(finite_values(frame, "y"))
    levels = max((frame[k].n_unique() for k in gkeys), default=1)
    spec = charts.panels_chart(records(frame), specs, label(inp.target), y_log, [(k, g.title) for g, k in zip(groups, gkeys)], max_levels=levels)
    html = page.add_chart(spec, renderer=renderer_for(frame.height * len(shown)), label="measures against the target")
    notes = [
        "Drag a rectangle in any panel to highlight the same runs in every panel (double-click to clear). "
        "Lines: least-squares fit per colour group, drawn in the browser from the points shown (on log axes, in log10 of the value)."
    ]
    if sampled:
        notes.append(sampled)
    if any(s["log"] for s in specs) or y_log:
        notes.append("Axes spanning two or more decades are logarithmic.")
    if rest:
        notes.append(f"{len(rest)} more measure(s) are in the ranking but not drawn here: {', '.join(short(m) for m in rest)}.")
    if dcols:
        notes.append(f"Hover a point for its measure's diagnostics ({', '.join(short(d) for d in dcols)}): they describe how "
                     "well the measure was estimated and are never ranked or drawn as measures.")
    if not groups:
        notes.append("No intervention or hyperparameter takes between 2 and 12 values, so runs are not coloured by group.")
    return html + "".join(note(n) for n in notes)


# --- granulated Kendall and sign-error ---------------------------------------------------------------------------


def _axis_label(axis: str) -> str:
    return "Ψ (mean over axes)" if axis == ALL_AXES else short(axis)


def too_few_configs(row: Mapping[str, Any]) -> bool:
    """A granulated row whose cells hold fewer than ``MIN_CELL_CONFIGS`` configurations on average (or that the
    statistics marked so): with two points per cell every τ is ±1, which says nothing."""
    text = str(row.get("note") or "")
    if "not enough cells" in text:  # the statistic's guard on the number of cells: shown undefined, with its note
        return False
    if "not enough" in text or "fewer than" in text:
        return True
    if row.get("n_cells_small") is not None:  # the statistics count (and leave out) the cells that are too small
        return not row.get("n_cells") and bool(row.get("n_cells_small"))
    cells = (row.get("n_cells") or 0) + (row.get("n_cells_undefined") or 0)
    return cells > 0 and (row.get("n_points") or 0) < MIN_CELL_CONFIGS * cells


def granulated(inp: Inputs, page: Page) -> str:
    """Heatmap of ψ_i (measure × hyperparameter axis), Jiang et al. 2020; cells from fewer than 3 configurations
    per cell say "not enough runs" instead of a saturated ±1."""
    g = inp.frame("granulated")
    if g is None:
        return missing(inp.why("granulated"))
    order = {m: i for i, m in enumerate(ranked_measures(inp))}
    g = g.with_columns(pl.col("measure").replace_strict(order, default=len(order), return_dtype=pl.Int64).alias("_o")).sort("_o", maintain_order=True)
    axes = list(dict.fromkeys(a for a in g["axis"].to_list() if a != ALL_AXES)) + ([ALL_AXES] if ALL_AXES in g["axis"].to_list() else [])
    few = {(r["measure"], r["axis"]) for r in g.iter_rows(named=True) if r["axis"] != ALL_AXES and too_few_configs(r)}
    blank = {a for a in axes if a != ALL_AXES and all(finite_or_none(r["psi"]) is None or (r["measure"], a) in few
                                                      for r in g.filter(pl.col("axis") == a).iter_rows(named=True))}
    testable = [a for a in axes if a != ALL_AXES and a not in blank]
    why_blank = []
    for a in sorted(blank):
        first = g.filter(pl.col("axis") == a).row(0, named=True)
        why_blank.append(f"{short(a)}: " + ("not enough runs (fewer than 3 configurations per cell; a two-level axis gives two, "
                                             "whose τ is always ±1)" if (first["measure"], a) in few else (first.get("note") or "ψ undefined")))
    if not testable:
        return (f"<p class='missing'>No hyperparameter axis can be scored by granulated Kendall in this sweep. {escape('; '.join(why_blank))}. "
                "Give an axis three or more levels (or vary it on its own) to test it.</p>"
                + "<details><summary>table</summary>" + table(g.drop("_o")) + "</details>")
    rows = []
    for r in g.iter_rows(named=True):
        psi = finite_or_none(r["psi"])
        cells = (r.get("n_cells") or 0) + (r.get("n_cells_undefined") or 0)
        tip = f"{r.get('n_cells', '?')} cells, {r.get('n_points', '?')} configurations" + (f"; {r['note']}" if r.get("note") else "")
        if r["axis"] == ALL_AXES:
            thin = [a for a in axes if a != ALL_AXES and (r["measure"], a) in few]
            if all((r["measure"], a) in few for a in testable):
                psi, text = None, "not enough runs"
                tip = f"every axis has fewer than {MIN_CELL_CONFIGS} configurations per cell"
            else:
                text = "—" if psi is None else f"{psi:+.2f}"
                if thin:
                    tip += f"; axes with fewer than {MIN_CELL_CONFIGS} configurations per cell: {', '.join(short(a) for a in thin)}"
        elif (r["measure"], r["axis"]) in few:
            psi, text = None, "not enough runs"
            tip = (f"{r.get('n_points', 0)} configurations in {cells} cell(s): fewer than {MIN_CELL_CONFIGS} per cell, "
                   "where τ can only be ±1; add levels to this axis")
        else:
            text = "—" if psi is None else f"{psi:+.2f}"
        rows.append({"x": _axis_label(r["axis"]), "y": short(r["measure"]), "value": psi, "text": text, "tip": tip})
    spec = charts.heatmap(rows, x_title="hyperparameter axis", y_title="measure", color_title="ψ (mean Kendall τ)",
                          title=f"Granulated Kendall ψ with {short(inp.target)}", x_order=[_axis_label(a) for a in axes],
                          cell_width=104 if few else None)
    n_few = len({a for _, a in few})
    return (
        page.add_chart(spec, label="granulated Kendall heatmap")
        + note("ψ_i: mean Kendall τ over the cells in which only axis i varies (seeds averaged first); Ψ: mean over axes. "
               "— marks an undefined ψ (see the table).")
        + (note(f"“not enough runs”: {n_few} axis/axes have fewer than {MIN_CELL_CONFIGS} configurations per cell (a two-level "
                "axis gives two points per cell, whose τ is always ±1). Give the axis three or more levels to test it.") if few else "")
        + "<details><summary>table</summary>" + table(g.drop("_o")) + "</details>"
    )


def sign_error_empty(inp: Inputs, se: pl.DataFrame | None) -> str:
    """Why no environment could be scored, and what would fill the section (said in the section, not in a table)."""
    reasons: list[str] = []
    if se is not None and "note" in se.columns:
        keyed = se.select(pl.col("axis").cast(pl.Utf8), pl.col("note").cast(pl.Utf8)).drop_nulls().unique(maintain_order=True)
        for axis, text in keyed.iter_rows():
            reasons.append(f"{'all axes pooled' if axis == ALL_AXES else short(axis)}: {text}")
    reasons += [n.split(":", 1)[1].strip() for n in inp.meta.get("notes") or [] if str(n).startswith("sign_error")]
    min_ess = inp.meta.get("min_ess", 12)
    why = "".join(f"<li>{escape(r)}</li>" for r in dict.fromkeys(reasons)) or f"<li>{escape(inp.why('sign_error_envs'))}</li>"
    return (
        f"<p class='missing'><b>No environment could be scored, so there is no sign-error to show.</b> Why:</p><ul class='note'>{why}</ul>"
        "<p>An environment is a pair of configurations that differ in one axis; its sign-error counts only when the "
        f"runs behind it weigh at least an effective sample size of {escape(min_ess)} (Dziugaite et al. 2020 use 12). "
        "What fills this section: "
        "more seeds (e.g. <code>python -m collect --seeds 0-4</code>), larger test sets, or a lower threshold "
        "(<code>python -m analyze report --min-ess 2</code>, at the cost of noisier environments).</p>"
    )


def sign_error(inp: Inputs, page: Page) -> str:
    """CDFs of sign-error over environments per axis (Dziugaite et al. 2020), with mean, p90 and max marked."""
    se = inp.frame("sign_error")
    if se is None:
        return sign_error_empty(inp, None)
    if inp.frame("sign_error_envs") is None and not any(finite_or_none(v) is not None for v in se["mean"].to_list()):
        return sign_error_empty(inp, se) + "<details><summary>table</summary>" + table(se) + "</details>"
    top = [m for m in featured_measures(inp, MAX_CDF_MEASURES) if m in set(se["measure"].to_list())]
    marks = [
        {"axis": r["axis"], "measure": short(r["measure"]), "statistic": s, "value": finite_or_none(r[s])}
        for r in se.filter(pl.col("measure").is_in(top)).iter_rows(named=True)
        for s in ("mean", "p90", "max")
        if finite_or_none(r[s]) is not None
    ]
    envs = inp.frame("sign_error_envs")
    parts = []
    if envs is not None:
        e = envs.filter(pl.col("measure").is_in(top)).select(
            pl.col("axis").cast(pl.Utf8),
            pl.col("measure").cast(pl.Utf8).map_elements(short, return_dtype=pl.Utf8),
            pl.col("error").cast(pl.Float64),
            (pl.col("weight").cast(pl.Float64) if "weight" in envs.columns else pl.lit(1.0)).alias("weight"),
        )
        if e.height and ALL_AXES not in set(e["axis"].to_list()) and ALL_AXES in set(se["axis"].to_list()):
            e = pl.concat([e, e.with_columns(pl.lit(ALL_AXES).alias("axis"))])  # the summary's pooled row: every environment
        binned = ""
        if e.height > inp.max_points:
            e = e.with_columns(pl.col("error").round(3)).group_by(["axis", "measure", "error"], maintain_order=True).agg(pl.col("weight").sum())
            binned = (f"With {envs.height:,} environments, errors are rounded to 0.001 and counted (the CDF is exact to that "
                      "resolution) so the page stays small.")
        env_rows = records(e)
        axes = list(dict.fromkeys(r["axis"] for r in env_rows))
        axes = [a for a in axes if a != ALL_AXES] + [a for a in axes if a == ALL_AXES]
        titles = [(a, "all axes pooled" if a == ALL_AXES else f"environments differing in {short(a)}") for a in axes]
        spec = charts.sign_error_cdfs(env_rows, marks, titles)
        parts.append(page.add_chart(spec, renderer=renderer_for(len(env_rows)), label="sign-error CDFs"))
        parts.append(note(f"Empirical CDF over environments (pairs of configurations differing in one axis) of the {len(top)} "
                          "best-ranked measures; the strip under each CDF marks the mean, p90 and max from the statistics. " + binned))
    else:
        parts.append(missing(inp.why("sign_error_envs") + " Showing the summary per axis instead of CDFs."))
        summary = [{**m, "axis": "all axes pooled" if m["axis"] == ALL_AXES else short(m["axis"])} for m in marks]
        parts.append(page.add_chart(charts.sign_error_summary(summary), label="sign-error summary"))
    parts.append("<details><summary>table</summary>" + table(se) + "</details>")
    return "".join(parts)


# --- partial correlations ----------------------------------------------------------------------------------------


def partial(inp: Inputs, page: Page) -> str:
    """Measure vs target controlling for each covariate (Kendall τ), with the change from the raw τ."""
    raw = {m: finite_or_none(r.get("kendall_tau")) for m, r in rank_rows(inp).items()}
    order = {m: i for i, m in enumerate(ranked_measures(inp))}
    parts = []
    shown = False
    for key, control_col, what in (("partial", "covariates", "covariates"), ("partial_matrix", "control", "each other measure")):
        frame = inp.frame(key)
        if frame is None:
            continue
        shown = True
        drawn, cut = frame, ""
        if key == "partial_matrix":
            top = [m for m in featured_measures(inp, MAX_MATRIX) if m in set(frame["measure"].to_list())]
            drawn = frame.filter(pl.col("measure").is_in(top) & pl.col("control").is_in(top))
            if len(top) < frame["measure"].n_unique():
                cut = f" Matrix cut to the {len(top)} best-ranked measures (rows and controls); the table has all {frame.height} pairs."
        drawn = drawn.with_columns(pl.col("measure").replace_strict(order, default=len(order), return_dtype=pl.Int64).alias("_o")).sort("_o", maintain_order=True)
        rows = []
        for r in drawn.iter_rows(named=True):
            tau = finite_or_none(r["kendall_tau"])
            base = raw.get(r["measure"])
            delta = finite_or_none(r["change"]) if "change" in drawn.columns else (tau - base if tau is not None and base is not None else None)
            text = "—" if tau is None else f"{tau:+.2f}" + (f" (Δ {delta:+.2f})" if delta is not None else "")
            tip = f"raw τ {base:+.3f}" if base is not None else "raw τ not in the ranking"
            if r.get("note"):
                tip += f"; {r['note']}"
            rows.append({"x": short(str(r[control_col])), "y": short(r["measure"]), "value": tau, "text": text, "tip": tip})
        if not any(r["value"] is not None for r in rows):
            parts.append(missing(f"Every partial τ in the '{key}' frame is undefined (too few runs, or collinear measures); see its notes below."))
        else:
            spec = charts.heatmap(rows, x_title=f"controlling for ({what})", y_title="measure", color_title="partial τ",
                                  title=f"Partial Kendall τ with {short(inp.target)}, controlling for {what}", cell_width=100)
            parts.append(page.add_chart(spec, label=f"partial correlations ({key})"))
            parts.append(note("Cell: partial τ and, in brackets, its change Δ from the raw τ of the ranking (partial − raw)." + cut))
        parts.append("<details><summary>table</summary>" + table(frame) + "</details>")
    if not shown:
        return missing(inp.why("partial") + " " + inp.why("partial_matrix"))
    return "".join(parts)


# --- flags -------------------------------------------------------------------------------------------------------


def flags(inp: Inputs, page: Page) -> str:
    """Every flag with its evidence and sentence, sortable."""
    f = inp.frame("flags")
    if f is None:
        return missing(inp.why("flags"))
    f = f.sort(pl.col("flag").cast(pl.Utf8).is_in(list(INFO_FLAGS)), maintain_order=True)  # breaks first, untested last
    front = [c for c in ("flag", "measure", "axis", "group", "reference", "sentence") if c in f.columns]
    rest = [c for c in f.columns if c not in front and c != "target"]
    f = f.select(front + rest)
    if "measure" in f.columns:
        f = f.with_columns(pl.col("measure").cast(pl.Utf8).map_elements(short, return_dtype=pl.Utf8))
    html = note("Click a column header to sort.") + table(f, max_rows=2000, wide=("sentence",), scroll=True)
    evidence = inp.frame("flag_evidence")
    if evidence is not None:
        evidence = evidence.drop([c for c in ("target",) if c in evidence.columns]).with_columns(
            pl.col("measure").cast(pl.Utf8).map_elements(short, return_dtype=pl.Utf8))
        html += ("<h3>Evidence: every group compared with the rest</h3>"
                 + note("One row per measure × group tested, flagged or not.")
                 + table(evidence, max_rows=2000, scroll=True))
    return html


# --- training curves ---------------------------------------------------------------------------------------------


def curves(inp: Inputs, page: Page) -> str:
    """Loss, accuracy and measures logged along training, one line per run, coloured by intervention group."""
    c = inp.frame("curves")
    if c is None:
        return missing(inp.why("curves"))
    run_ids = c.select(pl.col("run_id").cast(pl.Utf8).unique(maintain_order=True))
    picked, sampled = sample(run_ids, MAX_CURVE_RUNS, inp.seed, what="runs' curves")
    groups = groupings(inp.done)
    lab = pl.DataFrame({"run_id": inp.done["run_id"].cast(pl.Utf8)})
    if groups:
        lab = lab.with_columns(group_labels(inp.done, groups[0]).alias("group"))
    c = c.with_columns(pl.col("run_id").cast(pl.Utf8)).join(picked, on="run_id").join(lab, on="run_id", how="left")
    c = c.filter(~pl.col("metric").cast(pl.Utf8).is_in(list(CURVE_BOOKKEEPING)))
    if c.height == 0:
        return missing("The curves frame holds only step counters (epoch, swa); no loss, accuracy or measure to draw.")
    if "group" in c.columns:
        c = c.with_columns(pl.col("group").fill_null("(not a finished run)"))
    thinned = ""
    if c.height > MAX_CURVE_POINTS:
        every = math.ceil(c.height / MAX_CURVE_POINTS)
        c = c.sort(["run_id", "metric", "step"]).with_columns(pl.int_range(pl.len()).over(["run_id", "metric"]).alias("_i"),
                                                               pl.len().over(["run_id", "metric"]).alias("_n"))
        c = c.filter((pl.col("_i") % every == 0) | (pl.col("_i") == pl.col("_n") - 1)).drop("_i", "_n")
        thinned = f"One evaluation in {every} (and the last) of each curve is drawn, so the page stays small."
    c = c.with_columns(pl.col("metric").cast(pl.Utf8).replace(CURVE_LABELS).alias("metric"))
    metrics = c["metric"].unique(maintain_order=True).to_list()
    loss_first = sorted(metrics, key=lambda m: (0 if "loss" in m else 1 if "acc" in m else 2, m))
    c = c.with_columns(pl.col("metric").replace_strict({m: i for i, m in enumerate(loss_first)}, return_dtype=pl.Int64).alias("_o")).sort(["_o", "run_id", "step"])
    short = pl.col("run_id").str.slice(0, 8)  # one line per run needs only a unique key: 8 hex digits, if unique
    if c.select(short.n_unique()).item() == c.select(pl.col("run_id").n_unique()).item():
        c = c.with_columns(short.alias("run_id"))
    data = records(c.select("run_id", "metric", pl.col("step").cast(pl.Float64), pl.col("value").cast(pl.Float64), *(["group"] if "group" in c.columns else [])))
    spec = charts.lines(
        data, x="step", y="value", x_title="training step (optimizer updates)", y_title="value",
        title="", color="group" if "group" in c.columns else None,
        color_title=groups[0].title if groups else "", detail="run_id", panels=loss_first, panel_field="metric",
    )
    return page.add_chart(spec, renderer=renderer_for(len(data)), label="training curves") + note(sampled) + note(thinned)


# --- cost --------------------------------------------------------------------------------------------------------


def cost(inp: Inputs, page: Page) -> str:
    """Median seconds per measure per run and the ratio to the cheapest (paper 000: trace 1.5 h vs margins 5 s)."""
    f = inp.frame("cost")
    if f is None:
        have = [c for c in inp.done.columns if c.startswith(TIME)]
        extra = f" The ledger has {len(have)} time.* column(s)." if have else " The ledger has no time.* columns."
        return missing(inp.why("cost") + extra)
    f = f.sort("median_seconds", nulls_last=True)
    rows = [
        {"measure": short(str(r["measure"])), "seconds": finite_or_none(r["median_seconds"]),
         "text": fmt_number(r["median_seconds"]) + " s" + (f"  (× {r['ratio_to_cheapest']:.3g})" if finite_or_none(r.get("ratio_to_cheapest")) is not None else "")}
        for r in f.iter_rows(named=True)
        if finite_or_none(r["median_seconds"]) is not None
    ]
    log = spans_decades(finite_values(f, "median_seconds"))
    spec = charts.cost_chart(rows, log)
    return "<div class='side'><div>" + page.add_chart(spec, label="cost per measure") + "</div><div>" + table(f) + "</div></div>"


# --- runs and anything else --------------------------------------------------------------------------------------


def runs(inp: Inputs, page: Page) -> str:
    """Every run (failed ones first), run ids linked to MLflow, with the hyperparameters that vary and every
    diagnostic (``diag.*``: standard errors, HVP counts, convergence) so a measure's estimate can be judged per run."""
    ledger = inp.ledger
    varied = [c for c in ledger.columns if c.startswith(HP) and ledger[c].drop_nulls().cast(pl.Utf8).n_unique() > 1]
    diags = [c for c in ledger.columns if c.startswith(DIAG)]
    cols = [c for c in ("run_id", "status", "tag.intervention", "seed", *varied, inp.target, *diags, "tag.failure_reason") if c in ledger.columns]
    frame = ledger.select(cols)
    if "status" in cols:
        frame = frame.sort(pl.col("status") == "FINISHED", maintain_order=True)
    links = {"run_id": inp.run_url} if inp.mlflow_ui else {}
    lead = note(f"{len(diags)} diagnostic column(s) (diag.*) are shown per run; they are not measures and are never ranked.") if diags else ""
    return lead + table(frame, links=links, scroll=True)


CONSUMED = {"flag_coverage", "verdict_matrix", "reversal_explanations", "verdict_sentences", "rank", "correlations", "flag_evidence", "per_sample_corr", "partial", "partial_matrix", "granulated", "sign_error", "sign_error_envs", "cmi", "flags", "cost", "curves", "per_sample", "detectable_effect"}


def other(inp: Inputs, page: Page) -> str:
    """Frames the report has no view for, as tables (nothing handed in is silently dropped)."""
    parts = []
    for key, frame in inp.frames.items():
        if key in CONSUMED or not isinstance(frame, pl.DataFrame):
            continue
        parts.append(f"<h3>{escape(key)}</h3>" + table(frame, scroll=True))
    return "".join(parts)


SectionFn = Callable[[Inputs, Page], str]


SECTIONS: dict[str, tuple[str, SectionFn]] = {
    "header": ("", header),
    "verdict": ("Verdict", verdict),
    "comparison": ("Comparison point", comparison),
    "ranking": ("Ranking", ranking),
    "panels": ("Measures against generalization", panels),
    "granulated": ("Granulated Kendall", granulated),
    "sign_error": ("Sign-error over environments", sign_error),
    "partial": ("Partial correlations", partial),
    "flags": ("Flags", flags),
    "paper": ("Paper-specific views", paper_views),
    "curves": ("Training curves", curves),
    "cost": ("Cost", cost),
    "runs": ("Runs", runs),
    "other": ("Other frames", other),
}


def resolve_sections(names: Sequence[str] | None) -> list[str]:
    """Section names to render, in page order; the header always comes first. Raises ValueError on unknown names."""
    if not names:
        return list(SECTIONS)
    wanted = {n.strip().lower().replace("-", "_") for n in names if n.strip()}
    unknown = sorted(wanted - set(SECTIONS))
    if unknown:
        raise ValueError(f"--sections: unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    return ["header"] + [n for n in SECTIONS if n in wanted and n != "header"]
