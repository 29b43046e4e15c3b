"""Views that reproduce the papers' figures, each drawn only when the ledger (or a data frame) holds what it needs.

- paper 004 (Kaur, Cohen, Lipton): λ_max against the learning rate with the edge-of-stability line 2/η;
- paper 000 (flat minima and large margins): per-sample Hessian trace against ACEHT and the margin bound, their
  Pearson r over training, and the output-margin distributions of small- vs large-batch runs (its figure 4);
- paper 002 (Zhang et al.): log volume and sharpness against test error per optimizer (its figures 3–4);
- alpha / last-layer scaling (paper 002 appendix C, paper 000 Prop. 5.1): measures against the scale factor.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from analyze.columns import MEASURE
from analyze.report import charts
from analyze.report.data import finite_values, label, records, sample, short, spans_decades
from analyze.report.page import Page, escape, table
from analyze.report.blocks import Inputs, note, renderer_for

MAX_SAMPLE_RUNS = 3  # runs per batch-size group whose per-sample margins are drawn
MAX_SAMPLES = 2000  # per-sample points per run drawn
SCALE_MEASURES = ("hessian_trace", "lambda_max", "hessian_frobenius", "sharpness", "log_volume", "margin_mean", "relative_flatness")


def _varies(frame: pl.DataFrame, column: str) -> bool:
    return column in frame.columns and frame[column].drop_nulls().n_unique() >= 2


def _colour(frame: pl.DataFrame, *candidates: str) -> str | None:
    return next((c for c in candidates if _varies(frame, c) and frame[c].n_unique() <= 12), None)


def _rows(frame: pl.DataFrame, cols: dict[str, str], colour: str | None) -> list[dict[str, Any]]:
    exprs = [pl.col("run_id").cast(pl.Utf8).alias("id")] + [pl.col(c).cast(pl.Float64, strict=False).alias(k) for k, c in cols.items()]
    if colour:
        exprs.append(pl.col(colour).cast(pl.Utf8).fill_null("none").alias("colour"))
    return records(frame.select(exprs))


GD_OPTIMIZERS = ("sgd", "gd")  # plain gradient descent when the batch is the whole training set and momentum is 0


def full_batch_gd(frame: pl.DataFrame) -> pl.Series:
    """Per run: trained by full-batch gradient descent (optimizer sgd/gd, no momentum, batch ≥ |S| + |A|)? The 2/η
    edge of stability (paper 004) is a statement about exactly these runs, not about Adam or minibatch SGD."""
    n = frame.height
    if "hp.optimizer" not in frame.columns or "hp.batch_size" not in frame.columns or "hp.n_train" not in frame.columns:
        return pl.Series([False] * n)
    n_fit = pl.col("hp.n_train").cast(pl.Float64, strict=False) + (
        pl.col("hp.attack_size").cast(pl.Float64, strict=False).fill_null(0) if "hp.attack_size" in frame.columns else pl.lit(0.0))
    momentum = pl.col("hp.momentum").cast(pl.Float64, strict=False).fill_null(0) if "hp.momentum" in frame.columns else pl.lit(0.0)
    gd = (pl.col("hp.optimizer").cast(pl.Utf8).str.to_lowercase().is_in(list(GD_OPTIMIZERS))
          & (momentum == 0) & (pl.col("hp.batch_size").cast(pl.Float64, strict=False) >= n_fit))
    return frame.select(gd.fill_null(False).alias("gd"))["gd"]


def lambda_max_vs_lr(inp: Inputs, page: Page) -> str | None:
    """Paper 004: λ_max against η, with the 2/η line drawn only where full-batch GD runs were trained."""
    done = inp.done
    y_col = next((c for c in ("measure.lambda_max", "measure.lambda_max_between_iterates") if c in done.columns and finite_values(done, c).len()), None)
    if y_col is None or not _varies(done, "hp.lr"):
        return None
    data = done.filter(pl.col(y_col).cast(pl.Float64, strict=False).is_finite() & (pl.col("hp.lr").cast(pl.Float64, strict=False) > 0))
    data, sampled = sample(data, inp.max_points, inp.seed)
    gd = full_batch_gd(data)
    colour = _colour(data, "hp.optimizer", "hp.batch_size", "tag.intervention")
    rows = [{**r, "gd": bool(g)} for r, g in zip(_rows(data, {"lr": "hp.lr", "lam": y_col}, colour), gd.to_list())]
    n_gd = int(gd.sum())
    if n_gd:
        subtitle = (f"dashed: 2/η, the edge of stability of full-batch gradient descent, drawn at the learning rates of the "
                    f"{n_gd} full-batch GD run(s) only (ringed)")
        extra = [charts.edge_of_stability_line("lr", label(y_col), only="gd"), charts.ring("lr", "lam", only="gd")]
    else:
        subtitle = "no full-batch gradient-descent run here, so the 2/η line (paper 004) is not drawn"
        extra = []
    spec = charts.scatter(
        rows, x="lr", y="lam", x_title="learning rate η", y_title=label(y_col), title="λ_max against learning rate (paper 004)",
        subtitle=subtitle, color="colour" if colour else None, color_title=short(colour) if colour else "", x_log=True,
        y_log=bool(finite_values(data, y_col).min() > 0), extra_layers=extra,
    )
    text = ("The edge of stability (λ_max → 2/η) describes full-batch gradient descent (optimizer sgd without momentum, "
            "batch ≥ |S| + |A|); Adam and minibatch SGD runs are drawn without a reference line. ")
    return ("<h3>λ_max against learning rate</h3>" + page.add_chart(spec, renderer=renderer_for(len(rows)), label="lambda max vs lr")
            + note(text + f"{n_gd} of {len(rows)} runs are full-batch GD. " + sampled))


def _final_step(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows of the last recorded step (per-sample artifacts logged along training carry a ``step`` column)."""
    if "step" not in frame.columns or frame["step"].null_count() == frame.height:
        return frame
    return frame.filter(pl.col("step") == pl.col("step").max())


def _r_text(inp: Inputs, run_id: str, versus: str) -> str:
    """The Pearson r of a run's per-sample trace with ``versus``: from the statistics frame, else from the ledger."""
    corr = inp.frame("per_sample_corr")
    if corr is not None:
        rows = _final_step(corr.filter((pl.col("run_id").cast(pl.Utf8) == run_id) & (pl.col("versus") == versus)))
        if rows.height:
            r, r_lof = rows["pearson_r"][0], rows["pearson_r_lof"][0] if "pearson_r_lof" in rows.columns else None
            if r is not None:
                return f"Pearson r = {r:.3f}" + (f", {r_lof:.3f} without LOF outliers" if r_lof is not None else "") + " (statistics)"
    key = f"measure.per_sample_r_{versus}"
    row = inp.done.filter(pl.col("run_id").cast(pl.Utf8) == run_id)
    if key in row.columns and row.height and row[key][0] is not None:
        return f"Pearson r = {row[key][0]:.3f} (ledger, {key})"
    return "Pearson r not computed"


def per_sample_trace(inp: Inputs, page: Page) -> str | None:
    """Paper 000: per-sample Hessian trace against ACEHT and the margin bound, and their Pearson r over training."""
    ps = inp.frame("per_sample")
    if ps is None or "trace" not in ps.columns or not {"aceht", "margin_bound"} & set(ps.columns):
        return None
    run_ids = ps["run_id"].cast(pl.Utf8).unique(maintain_order=True).to_list()[:2]
    parts = ["<h3>Per-sample Hessian trace against ACEHT and the margin bound (paper 000)</h3>"]
    for run_id in run_ids:
        one = _final_step(ps.filter(pl.col("run_id").cast(pl.Utf8) == run_id))
        if "correct" in one.columns:
            one = one.filter(pl.col("correct").cast(pl.Boolean))
        one, sampled = sample(one, MAX_SAMPLES, inp.seed, what="correctly classified samples")
        for other in ("aceht", "margin_bound"):
            if other not in one.columns:
                continue
            rows = records(one.select(pl.col(other).cast(pl.Float64).alias("a"), pl.col("trace").cast(pl.Float64).alias("t")))
            spec = charts.scatter(
                rows, x="a", y="t", x_title=f"{'ACEHT' if other == 'aceht' else 'margin bound'} (per sample)",
                y_title="per-sample Hessian trace", title=f"run {run_id}: trace vs {other}", subtitle=_r_text(inp, run_id, other),
                width=280, height=220,
            )
            parts.append(page.add_chart(spec, renderer=renderer_for(len(rows)), label=f"trace vs {other}"))
        parts.append(note(sampled))
    parts.append(note("Correctly classified samples only, as in the paper; ACEHT = (‖x‖² + 1)(1 − Σ_j S_j²), "
                      "margin bound = (‖x‖² + 1)(1 − γ_softmax²)."))
    parts.append(_r_over_training(inp, page))
    return "".join(parts)


def _r_over_training(inp: Inputs, page: Page) -> str:
    corr = inp.frame("per_sample_corr")
    rows: list[dict[str, Any]] = []
    if corr is not None and "step" in corr.columns and corr["step"].drop_nulls().n_unique() > 1:
        rows = records(corr.filter(pl.col("step").is_not_null()).select(
            pl.col("run_id").cast(pl.Utf8), pl.col("versus").cast(pl.Utf8).alias("metric"),
            pl.col("step").cast(pl.Float64), pl.col("pearson_r").cast(pl.Float64).alias("value")))
    else:
        c = inp.frame("curves")
        r_curves = None if c is None else c.filter(pl.col("metric").cast(pl.Utf8).str.starts_with("per_sample_r_"))
        if r_curves is not None and r_curves.height:
            rows = records(r_curves.select(
                pl.col("run_id").cast(pl.Utf8), pl.col("metric").cast(pl.Utf8).str.replace("^per_sample_r_", ""),
                pl.col("step").cast(pl.Float64), pl.col("value").cast(pl.Float64)))
    if not rows:
        return note("r over training: not recorded (log per-sample traces along training, e.g. add per_sample_trace to the "
                    "sweep's curve_measures).")
    spec = charts.lines(rows, x="step", y="value", x_title="training step (optimizer updates)", y_title="Pearson r (per-sample trace vs bound)",
                        title="Pearson r between per-sample trace and the bound, over training", color="metric",
                        color_title="compared with", detail="run_id", width=420)
    return page.add_chart(spec, renderer=renderer_for(len(rows)), label="r over training")


def margin_distributions(inp: Inputs, page: Page) -> str | None:
    """Paper 000 figure 4: output-margin distributions of the smallest- vs largest-batch runs, with skewness."""
    ps = inp.frame("per_sample")
    done = inp.done
    if ps is not None:
        ps = pl.concat([_final_step(part) for part in ps.partition_by("run_id", maintain_order=True)], how="diagonal_relaxed")
    if ps is None or "output_margin" not in ps.columns or not _varies(done, "hp.batch_size"):
        return None
    sizes = sorted(done["hp.batch_size"].drop_nulls().unique().to_list())
    small, large = sizes[0], sizes[-1]
    have = set(ps["run_id"].cast(pl.Utf8).unique().to_list())
    chosen: list[tuple[str, str]] = []
    for size, name in ((small, "small"), (large, "large")):
        ids = [r for r in done.filter(pl.col("hp.batch_size") == size)["run_id"].cast(pl.Utf8).to_list() if r in have][:MAX_SAMPLE_RUNS]
        chosen += [(r, f"{name} batch ({size})") for r in ids]
    if len({g for _, g in chosen}) < 2:
        return None
    pieces = []
    for run_id, group in chosen:
        one = ps.filter(pl.col("run_id").cast(pl.Utf8) == run_id)
        one, _ = sample(one, MAX_SAMPLES, inp.seed)
        pieces.append(one.select(pl.lit(group).alias("group"), pl.col("output_margin").cast(pl.Float64).alias("value")))
    rows = records(pl.concat(pieces))
    spec = charts.distributions(rows, value_title="output margin γ = f_y − max_{j≠y} f_j (logit units)", group_title="runs",
                                title="Output-margin distributions, small vs large batch (paper 000, figure 4)")
    skew_cols = [c for c in ("measure.margin_skew", "measure.margin_mean", "measure.margin_q10") if c in done.columns]
    info = done.filter(pl.col("run_id").cast(pl.Utf8).is_in([r for r, _ in chosen])).select(
        [pl.col("run_id"), pl.col("hp.batch_size"), *[pl.col(c) for c in skew_cols]]
    )
    return (
        "<h3>Margin distributions of small- vs large-batch runs</h3>"
        + f"<div class='side'><div>{page.add_chart(spec, renderer=renderer_for(len(rows)), label='margin distributions')}</div>"
        + f"<div><p class='note'>Skewness and other summaries of the runs drawn, from the ledger (up to {MAX_SAMPLE_RUNS} runs per group, "
        + f"at most {MAX_SAMPLES} samples each):</p>{table(info, sortable=False)}</div></div>"
    )


def volume_sharpness(inp: Inputs, page: Page) -> str | None:
    """Paper 002 figures 3–4: log volume and sharpness against test error, per optimizer (says which is missing)."""
    done = inp.done
    wanted = (f"{MEASURE}log_volume", f"{MEASURE}sharpness")
    measures = [c for c in wanted if c in done.columns and finite_values(done, c).len()]
    y_col = next((c for c in ("gen.test_err", "gen.test_acc") if c in done.columns), None)
    if not measures or y_col is None or not _varies(done, "hp.optimizer"):
        return None
    data, sampled = sample(done, inp.max_points, inp.seed)
    parts = ["<h3>Log volume and sharpness against test error, per optimizer (paper 002)</h3>"]
    for m in measures:
        rows = _rows(data, {"m": m, "y": y_col}, "hp.optimizer")
        spec = charts.scatter(rows, x="m", y="y", x_title=label(m), y_title=label(y_col), title=f"{short(m)} vs {short(y_col)}",
                              color="colour", color_title="optimizer", x_log=spans_decades(finite_values(data, m)))
        parts.append(page.add_chart(spec, renderer=renderer_for(len(rows)), label=f"{short(m)} vs test error"))
    absent = [short(c) for c in wanted if c not in measures]
    if absent:
        parts.append(f"<p class='missing'>{' and '.join(absent)} was not computed in this sweep, so only "
                     f"{' and '.join(short(c) for c in measures)} is drawn. Paper 002's point is the contrast between the two: "
                     "add <code>\"log_volume\"</code> to the spec's <code>measures</code> (as the built-in <code>volume</code> sweep does; "
                     "it needs the fcn architecture) to see it.</p>" if "log_volume" in absent else
                     f"<p class='missing'>{' and '.join(absent)} was not computed in this sweep; add it to the spec's measures.</p>")
    return "".join(parts) + note(sampled)


def scaling(inp: Inputs, page: Page) -> str | None:
    """Measures before and after alpha / last-layer scaling: the function (and test error) is unchanged, flatness is not."""
    done = inp.done
    scale = next((c for c in ("hp.alpha_scale", "hp.last_layer_scale") if _varies(done, c)), None)
    if scale is None:
        return None
    measures = [f"{MEASURE}{m}" for m in SCALE_MEASURES if f"{MEASURE}{m}" in done.columns and finite_values(done, f"{MEASURE}{m}").len()]
    if inp.target in done.columns:
        measures.append(inp.target)
    if not measures:
        return None
    others = [c for c in done.columns if c.startswith("hp.") and c != scale and _varies(done, c)]
    key = pl.concat_str([pl.col(c).cast(pl.Utf8).fill_null("none") for c in others + ["seed"] if c in done.columns], separator=" ") if others or "seed" in done.columns else pl.lit("all")
    data, sampled = sample(done.with_columns(key.alias("_line")), inp.max_points, inp.seed)
    parts = [f"<h3>Measures before and after {escape(short(scale).replace('_', ' '))}</h3>"]
    for m in measures:
        rows = records(data.select(pl.col("run_id").cast(pl.Utf8).alias("id"), pl.col(scale).cast(pl.Float64).alias("s"),
                                   pl.col(m).cast(pl.Float64, strict=False).alias("v"), pl.col("_line")))
        line = {"mark": {"type": "line", "opacity": 0.4, "color": "#888"}, "encoding": {"x": {"field": "s", "type": "quantitative"}, "y": {"field": "v", "type": "quantitative"}, "detail": {"field": "_line", "type": "nominal"}}}
        spec = charts.scatter(rows, x="s", y="v", x_title=label(scale), y_title=label(m), title=short(m), x_log=True,
                              y_log=spans_decades(finite_values(data, m)), width=240, height=190, extra_layers=[line])
        parts.append(page.add_chart(spec, renderer=renderer_for(len(rows)), label=f"{short(m)} vs scale"))
    return "".join(parts) + note("Grey lines join runs that differ only in the scale factor. " + sampled)


VIEWS = (lambda_max_vs_lr, per_sample_trace, margin_distributions, volume_sharpness, scaling)


def paper_views(inp: Inputs, page: Page) -> str:
    parts = [html for view in VIEWS if (html := view(inp, page))]
    if parts:
        return "".join(parts)
    return (
        "<p class='note'>No paper-specific data in this ledger. Views appear for: measure.lambda_max with several hp.lr "
        "(paper 004); a per_sample frame with trace/aceht/margin_bound or output_margin and several hp.batch_size (paper 000); "
        "measure.log_volume or measure.sharpness with several hp.optimizer (paper 002); several hp.alpha_scale or "
        "hp.last_layer_scale values.</p>"
    )
