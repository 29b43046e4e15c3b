"""Vega-Lite specs for the report, as plain dicts: data in, spec out, nothing computed in Python.

Each function takes rows already shaped by ``analyze.report.data`` (short dot-free field keys) and returns one
spec. Regression lines, histograms, box plots and empirical CDFs are Vega-Lite transforms drawn in the browser
from the rows shown; every number the text of the report quotes comes from the statistics frames.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"  # an identifier only; nothing is fetched
GREY = "#c8c8c8"
CONFIG: dict[str, Any] = {
    "font": "DejaVu Sans, Helvetica, Arial, sans-serif",
    "axis": {"labelFontSize": 11, "titleFontSize": 12, "titleFontWeight": "normal", "labelLimit": 180, "labelOverlap": True},
    "legend": {"labelFontSize": 11, "titleFontSize": 12, "labelLimit": 300, "symbolLimit": 40},
    "title": {"fontSize": 13, "fontWeight": "bold", "anchor": "start", "limit": 900, "subtitleFontSize": 11},
    "view": {"stroke": "#ddd"},
}


def _spec(body: Mapping[str, Any], datasets: Mapping[str, list] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"$schema": SCHEMA, "config": CONFIG, **body}
    if datasets:
        out["datasets"] = dict(datasets)
    return out


def palette(n_levels: int) -> dict[str, Any]:
    """A categorical colour scale with enough distinct colours for ``n_levels`` groups (up to 20)."""
    return {"scheme": "tableau10" if n_levels <= 10 else "tableau20"}


def _log_axis(log: bool, values: Sequence[Any] = ()) -> dict[str, Any]:
    """Ticks and grid lines of a log axis at powers of ten only (``decade_ticks`` of the positive ``values``): a grid
    line at every 2…9 × 10^k would hide the points, and their labels overlap."""
    if not log:
        return {}
    positive = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    if not positive:
        return {"axis": {"tickCount": 5}}
    return {"axis": {"values": decade_ticks(min(positive), max(positive)), "format": "~g", "labelOverlap": False}}


def decade_ticks(lo: float, hi: float, max_ticks: int = 7) -> list[float]:
    """Powers of ten from below ``lo`` to above ``hi`` (every k-th decade when there are more than ``max_ticks``),
    so a log axis is labelled 0.001, 0.01, 0.1, 1 … without crowded 2…9 × 10^k labels."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if last == first:
        last += 1
    step = max(1, math.ceil((last - first + 1) / max_ticks))
    return [10.0**k for k in range(first, last + 1, step)] + ([10.0**last] if (last - first) % step else [])


def _scale(log: bool, zero: bool = False) -> dict[str, Any]:
    return {"type": "log"} if log else {"zero": zero, "nice": True}


# --- ranking -----------------------------------------------------------------------------------------------------


def ranking_chart(rows: Sequence[Mapping[str, Any]], n_measures: int, target_title: str) -> dict[str, Any]:
    """Dot-and-interval chart: one row per measure (ordered by rank), τ, ρ and r side by side with their CIs.

    rows: {measure_label, rank, coefficient, value, low, high, direction}.
    """
    y = {
        "field": "measure_label",
        "type": "nominal",
        "sort": {"field": "rank", "op": "min", "order": "ascending"},
        "title": None,
        "axis": {"labelLimit": 260},
    }
    color = {
        "field": "coefficient",
        "type": "nominal",
        "title": "coefficient",
        "scale": {"domain": ["Kendall τ", "Spearman ρ", "Pearson r"], "range": ["#1f5fa8", "#e08a1e", "#5a9e50"]},
        "legend": {"orient": "top"},
    }
    shape = {
        "field": "direction",
        "type": "nominal",
        "title": "sign vs literature",
        "scale": {
            "domain": ["as expected", "reversed", "direction unknown", "undefined"],
            "range": ["circle", "cross", "diamond", "square"],
        },
        "legend": {"orient": "top"},
    }
    offset = {"field": "coefficient", "type": "nominal", "sort": ["Kendall τ", "Spearman ρ", "Pearson r"]}
    return _spec(
        {
            "data": {"name": "ranking"},
            "width": 520,
            "height": {"step": 9},
            "title": {"text": f"Correlation of each measure with {target_title}", "subtitle": "lines: bootstrap CI; + marker and “reversed ⚠”: the sign contradicts the literature"},
            "encoding": {"y": y, "yOffset": offset},
            "layer": [
                {"mark": {"type": "rule", "color": "#888"}, "encoding": {"x": {"datum": 0, "type": "quantitative"}, "y": None, "yOffset": None}},
                {
                    "mark": {"type": "rule", "strokeWidth": 2},
                    "encoding": {
                        "x": {"field": "low", "type": "quantitative", "scale": {"domain": [-1, 1]}, "title": "correlation coefficient (−1 … 1)"},
                        "x2": {"field": "high"},
                        "color": color,
                    },
                },
                {
                    "mark": {"type": "point", "filled": True, "size": 70, "opacity": 1},
                    "encoding": {
                        "x": {"field": "value", "type": "quantitative"},
                        "color": color,
                        "shape": shape,
                        "tooltip": [
                            {"field": "measure_label", "title": "measure"},
                            {"field": "coefficient"},
                            {"field": "value", "format": ".3f"},
                            {"field": "low", "format": ".3f", "title": "CI low"},
                            {"field": "high", "format": ".3f", "title": "CI high"},
                            {"field": "direction"},
                        ],
                    },
                },
            ],
        },
        {"ranking": list(rows)},
    )


# --- per-measure panels with linked brushing ---------------------------------------------------------------------


def panels_chart(
    rows: list[dict[str, Any]],
    panels: Sequence[Mapping[str, Any]],
    y_title: str,
    y_log: bool,
    groupings: Sequence[tuple[str, str]],
    columns: int = 3,
    max_levels: int = 10,
) -> dict[str, Any]:
    """One scatter per measure against the target, coloured by a chosen grouping, one regression line per group.

    rows: {id, y, x0..xK, g0..gJ, d0..}; panels: [{key, title, log, tips?: [(key, title)] of extra tooltip fields}]; groupings: [(key, title)] offered in a menu;
    max_levels: the most groups any grouping has (above 10 the palette has 20 colours).
    Brushing a rectangle in any panel highlights the same runs in all panels (one global interval selection).
    """
    has_groups = bool(groupings)
    params: list[dict[str, Any]] = [
        {"name": "brush", "select": {"type": "interval", "resolve": "global"}, "views": [f"points{i}" for i in range(len(panels))]}
    ]
    if has_groups:
        params.insert(
            0,
            {
                "name": "colorby",
                "value": groupings[0][0],
                "bind": {"input": "select", "options": [k for k, _ in groupings], "labels": [t for _, t in groupings], "name": "colour runs by "},
            },
        )
    group_calc = [{"calculate": "datum[colorby]" if has_groups else "'all runs'", "as": "group"}]
    color_field = {"field": "group", "type": "nominal", "title": "colour group", "legend": {"orient": "top", "columns": 4}, "scale": palette(max_levels)}
    views = []
    for i, p in enumerate(panels):
        key, log = p["key"], bool(p["log"])
        x = {"field": key, "type": "quantitative", "title": p["title"], "scale": _scale(log), **_log_axis(log, [r.get(key) for r in rows])}
        yenc = {"field": "y", "type": "quantitative", "title": y_title, "scale": _scale(y_log), **_log_axis(y_log, [r.get("y") for r in rows])}
        points = {
            "name": f"points{i}",
            "mark": {"type": "circle", "size": 26, "opacity": 0.7},
            "encoding": {
                "x": x,
                "y": yenc,
                "color": {"condition": {"param": "brush", **color_field}, "value": GREY},
                "tooltip": [
                    {"field": "id", "title": "run"},
                    {"field": "group", "title": "group"},
                    {"field": key, "title": p["title"], "format": ".4g"},
                    {"field": "y", "title": y_title, "format": ".4g"},
                    *({"field": k, "title": t, "format": ".4g"} for k, t in p.get("tips", ())),
                ],
            },
        }
        # The fit is linear in the axes as drawn: on a log axis the regression is on log10 of the value.
        fit: list[dict[str, Any]] = [{"filter": f"isValid(datum['{key}']) && isValid(datum.y)"}]
        on, target = key, "y"
        if log:
            fit += [{"filter": f"datum['{key}'] > 0"}, {"calculate": f"log(datum['{key}']) / LN10", "as": "_lx"}]
            on = "_lx"
        if y_log:
            fit += [{"filter": "datum.y > 0"}, {"calculate": "log(datum.y) / LN10", "as": "_ly"}]
            target = "_ly"
        fit.append({"regression": target, "on": on, "groupby": ["group"]})
        if log:
            fit.append({"calculate": "pow(10, datum._lx)", "as": key})
        if y_log:
            fit.append({"calculate": "pow(10, datum._ly)", "as": "y"})
        line = {
            "transform": fit,
            "mark": {"type": "line", "strokeWidth": 2},
            "encoding": {"x": {"field": key, "type": "quantitative"}, "y": {"field": "y", "type": "quantitative"}, "color": color_field},
        }
        views.append({"title": p.get("panel_title", p["title"]), "width": 250, "height": 190, "transform": group_calc, "layer": [points, line]})
    return _spec(
        {
            "data": {"name": "runs"},
            "params": params,
            "concat": views,
            "columns": columns,
            "spacing": 24,
            "resolve": {"scale": {"color": "shared"}},
        },
        {"runs": rows},
    )


# --- heatmaps ----------------------------------------------------------------------------------------------------


def heatmap(
    rows: Sequence[Mapping[str, Any]],
    *,
    x_title: str,
    y_title: str,
    color_title: str,
    title: str,
    domain: tuple[float, float] = (-1.0, 1.0),
    scheme: str = "redblue",
    reverse: bool = True,
    cell_width: int | None = None,
    x_order: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Cells coloured by ``value`` with the number written in; rows: {x, y, value, text, tip?}. Columns appear in
    ``x_order`` (default: first appearance); every column is labelled (no label is dropped for overlap)."""
    n_x = len({r["x"] for r in rows}) or 1
    cell_width = cell_width or max(64, min(110, 640 // n_x))
    color = {
        "field": "value",
        "type": "quantitative",
        "title": color_title,
        "scale": {"domain": list(domain), "scheme": scheme, "reverse": reverse, "clamp": True},
        "legend": {"orient": "right", "gradientLength": 140},
    }
    tooltip = [{"field": "y", "title": y_title}, {"field": "x", "title": x_title}, {"field": "text", "title": color_title}]
    if rows and "tip" in rows[0]:
        tooltip.append({"field": "tip", "title": "detail"})
    span = max(abs(domain[0]), abs(domain[1])) or 1.0
    return _spec(
        {
            "data": {"name": "cells"},
            "title": title,
            "width": {"step": cell_width},
            "height": {"step": 24},
            "encoding": {
                "x": {"field": "x", "type": "nominal", "title": x_title, "sort": list(x_order or dict.fromkeys(r["x"] for r in rows)),
                      "axis": {"labelAngle": -35, "labelLimit": 160, "labelOverlap": False, "labelAlign": "right"}},
                "y": {"field": "y", "type": "nominal", "title": y_title, "sort": None, "axis": {"labelLimit": 260, "labelOverlap": False}},
            },
            "layer": [
                {"mark": {"type": "rect"}, "encoding": {"color": color, "tooltip": tooltip}},
                {
                    "mark": {"type": "text", "fontSize": 11},
                    "encoding": {
                        "text": {"field": "text"},
                        "color": {"condition": {"test": f"abs(datum.value) > {0.6 * span}", "value": "white"}, "value": "black"},
                    },
                },
            ],
        },
        {"cells": list(rows)},
    )


# --- sign-error --------------------------------------------------------------------------------------------------


def sign_error_cdfs(
    envs: Sequence[Mapping[str, Any]], marks: Sequence[Mapping[str, Any]], axes: Sequence[tuple[str, str]], columns: int = 3
) -> dict[str, Any]:
    """Per axis, the weighted empirical CDF of the sign-error over environments, one line per measure, and under it
    a strip with the statistics frame's mean, p90 and max. envs: {axis, measure, error, weight}; marks: {axis,
    measure, statistic, value}; axes: [(axis value in the rows, panel title)]."""
    color = {"field": "measure", "type": "nominal", "title": "measure", "legend": {"orient": "top", "columns": 3}}
    x_scale = {"domain": [0, 1]}
    views = []
    for axis, title in axes:
        cdf = {
            "data": {"name": "envs"},
            "title": title,
            "width": 260,
            "height": 170,
            "transform": [
                {"filter": {"field": "axis", "equal": axis}},
                {"joinaggregate": [{"op": "sum", "field": "weight", "as": "_total"}], "groupby": ["measure"]},
                {
                    "window": [{"op": "sum", "field": "weight", "as": "_cum"}],
                    "sort": [{"field": "error", "order": "ascending"}],
                    "groupby": ["measure"],
                    "frame": [None, 0],
                },
                {"calculate": "datum._cum / datum._total", "as": "cdf"},
            ],
            "mark": {"type": "line", "interpolate": "step-after", "strokeWidth": 1.8},
            "encoding": {
                "x": {"field": "error", "type": "quantitative", "title": None, "scale": x_scale},
                "y": {"field": "cdf", "type": "quantitative", "title": "fraction of environments", "scale": {"domain": [0, 1]}},
                "color": color,
            },
        }
        strip = {
            "data": {"name": "marks"},
            "width": 260,
            "height": {"step": 11},
            "transform": [{"filter": {"field": "axis", "equal": axis}}],
            "mark": {"type": "point", "filled": True, "size": 40, "opacity": 0.9},
            "encoding": {
                "x": {"field": "value", "type": "quantitative", "title": "sign-error (0 … 1)", "scale": x_scale},
                "y": {"field": "measure", "type": "nominal", "title": None, "axis": None},
                "shape": {
                    "field": "statistic",
                    "type": "nominal",
                    "title": "statistic",
                    "scale": {"domain": ["mean", "p90", "max"], "range": ["circle", "triangle-down", "square"]},
                    "legend": {"orient": "top"},
                },
                "color": color,
                "tooltip": [{"field": "measure"}, {"field": "statistic"}, {"field": "value", "format": ".3f"}],
            },
        }
        views.append({"vconcat": [cdf, strip], "spacing": 4})
    return _spec({"concat": views, "columns": columns, "spacing": 28}, {"envs": list(envs), "marks": list(marks)})


def sign_error_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Without per-environment errors: mean, p90 and max per measure and axis as dots. rows: {axis, measure, statistic, value}."""
    return _spec(
        {
            "data": {"name": "summary"},
            "title": "Sign-error over environments (mean, p90, max)",
            "facet": {"column": {"field": "axis", "type": "nominal", "title": "hyperparameter axis"}},
            "spec": {
                "width": 220,
                "height": {"step": 20},
                "mark": {"type": "point", "filled": True, "size": 60},
                "encoding": {
                    "y": {"field": "measure", "type": "nominal", "title": None, "axis": {"labelLimit": 220}},
                    "x": {"field": "value", "type": "quantitative", "title": "sign-error (0 … 1)", "scale": {"domain": [0, 1]}},
                    "color": {"field": "statistic", "type": "nominal", "title": "statistic", "sort": ["mean", "p90", "max"], "legend": {"orient": "top"}},
                    "tooltip": [{"field": "measure"}, {"field": "axis"}, {"field": "statistic"}, {"field": "value", "format": ".3f"}],
                },
            },
        },
        {"summary": list(rows)},
    )


# --- generic scatters for the paper-specific views ---------------------------------------------------------------


def scatter(
    rows: Sequence[Mapping[str, Any]],
    *,
    x: str,
    y: str,
    x_title: str,
    y_title: str,
    title: str,
    color: str | None = None,
    color_title: str = "",
    x_log: bool = False,
    y_log: bool = False,
    width: int = 300,
    height: int = 230,
    extra_layers: Sequence[Mapping[str, Any]] = (),
    subtitle: str = "",
) -> dict[str, Any]:
    """A plain scatter (optionally coloured) with optional extra layers drawn over the same data."""
    enc: dict[str, Any] = {
        "x": {"field": x, "type": "quantitative", "title": x_title, "scale": _scale(x_log), **_log_axis(x_log, [r.get(x) for r in rows])},
        "y": {"field": y, "type": "quantitative", "title": y_title, "scale": _scale(y_log), **_log_axis(y_log, [r.get(y) for r in rows])},
        "tooltip": [{"field": x, "title": x_title, "format": ".4g"}, {"field": y, "title": y_title, "format": ".4g"}],
    }
    if color:
        enc["color"] = {"field": color, "type": "nominal", "title": color_title or color, "legend": {"orient": "top", "columns": 3}}
        enc["tooltip"].insert(0, {"field": color, "title": color_title or color})
    if rows and "id" in rows[0]:
        enc["tooltip"].insert(0, {"field": "id", "title": "run"})
    layers = [{"mark": {"type": "circle", "size": 36, "opacity": 0.7}, "encoding": enc}, *extra_layers]
    return _spec(
        {
            "data": {"name": "points"},
            "title": {"text": title, **({"subtitle": subtitle} if subtitle else {})},
            "width": width,
            "height": height,
            "layer": layers,
        },
        {"points": list(rows)},
    )


def edge_of_stability_line(x: str, y_title: str, only: str | None = None) -> dict[str, Any]:
    """The 2/η level of full-batch gradient descent (paper 004) at each learning rate present (of the rows whose
    boolean field ``only`` is true, when given): a dashed segment from η/1.5 to 1.5·η at height 2/η, labelled."""
    keep = [{"filter": f"datum['{only}'] === true"}] if only else []
    return {
        "transform": [*keep, {"aggregate": [], "groupby": [x]}, {"calculate": f"2 / datum['{x}']", "as": "_edge"},
                      {"calculate": f"datum['{x}'] / 1.5", "as": "_lo"}, {"calculate": f"datum['{x}'] * 1.5", "as": "_hi"}],
        "layer": [
            {"mark": {"type": "rule", "color": "black", "strokeDash": [6, 4], "strokeWidth": 1.5},
             "encoding": {"x": {"field": "_lo", "type": "quantitative"}, "x2": {"field": "_hi"},
                          "y": {"field": "_edge", "type": "quantitative", "title": y_title},
                          "tooltip": [{"field": x, "title": "η"}, {"field": "_edge", "title": "2/η (full-batch GD)", "format": ".4g"}]}},
            {"mark": {"type": "text", "dy": -7, "fontSize": 10},
             "encoding": {"x": {"field": x, "type": "quantitative"}, "y": {"field": "_edge", "type": "quantitative"},
                          "text": {"value": "2/η"}}},
        ],
    }


def ring(x: str, y: str, only: str) -> dict[str, Any]:
    """Open black circles around the points whose boolean field ``only`` is true."""
    return {
        "transform": [{"filter": f"datum['{only}'] === true"}],
        "mark": {"type": "point", "shape": "circle", "size": 110, "color": "black", "strokeWidth": 1, "filled": False},
        "encoding": {"x": {"field": x, "type": "quantitative"}, "y": {"field": y, "type": "quantitative"}},
    }


def distributions(rows: Sequence[Mapping[str, Any]], *, value_title: str, group_title: str, title: str) -> dict[str, Any]:
    """Histograms (fraction of samples per bin, one colour per group, overlaid) above box plots of the same values.

    rows: {group, value}.
    """
    color = {"field": "group", "type": "nominal", "title": group_title, "legend": {"orient": "right"}}
    hist = {
        "width": 420,
        "height": 200,
        "title": title,
        "transform": [
            {"bin": {"maxbins": 50}, "field": "value", "as": ["_b0", "_b1"]},
            {"aggregate": [{"op": "count", "as": "_n"}], "groupby": ["group", "_b0", "_b1"]},
            {"joinaggregate": [{"op": "sum", "field": "_n", "as": "_total"}], "groupby": ["group"]},
            {"calculate": "datum._n / datum._total", "as": "fraction"},
        ],
        "mark": {"type": "bar", "opacity": 0.55, "binSpacing": 0},
        "encoding": {
            "x": {"field": "_b0", "type": "quantitative", "title": value_title, "bin": {"binned": True}},
            "x2": {"field": "_b1"},
            "y": {"field": "fraction", "type": "quantitative", "title": "fraction of samples", "stack": None},
            "color": color,
        },
    }
    box = {
        "width": 420,
        "height": {"step": 26},
        "mark": {"type": "boxplot", "extent": 1.5, "size": 16},
        "encoding": {
            "x": {"field": "value", "type": "quantitative", "title": value_title},
            "y": {"field": "group", "type": "nominal", "title": None, "axis": {"labelLimit": 220}},
            "color": {**color, "legend": None},
        },
    }
    return _spec({"data": {"name": "values"}, "vconcat": [hist, box], "spacing": 12}, {"values": list(rows)})


def lines(
    rows: Sequence[Mapping[str, Any]],
    *,
    x: str,
    y: str,
    x_title: str,
    y_title: str,
    title: str,
    color: str | None = None,
    color_title: str = "",
    detail: str | None = None,
    panels: Sequence[str] = (),
    panel_field: str = "panel",
    columns: int = 3,
    width: int = 260,
    height: int = 170,
) -> dict[str, Any]:
    """Lines of y over x (one per ``detail`` value). With ``panels``, one chart per value of ``panel_field``, each
    with its own y axis titled by that value (so every axis carries its quantity and unit)."""
    enc: dict[str, Any] = {
        "x": {"field": x, "type": "quantitative", "title": x_title},
        "y": {"field": y, "type": "quantitative", "title": y_title, "scale": {"zero": False}},
    }
    if color:
        n = len({r.get(color) for r in rows})
        enc["color"] = {"field": color, "type": "nominal", "title": color_title or color, "legend": {"orient": "top", "columns": 3}, "scale": palette(n)}
    if detail:
        enc["detail"] = {"field": detail, "type": "nominal"}
    enc["tooltip"] = [{"field": f} for f in (detail, color) if f] + [{"field": x}, {"field": y, "format": ".4g"}]
    mark = {"type": "line", "strokeWidth": 1.2, "opacity": 0.75}
    if not panels:
        return _spec({"data": {"name": "lines"}, "title": title, "width": width, "height": height, "mark": mark, "encoding": enc}, {"lines": list(rows)})
    views = []
    for p in panels:
        penc = {**enc, "y": {**enc["y"], "title": p}}
        views.append(
            {"transform": [{"filter": {"field": panel_field, "equal": p}}], "width": width, "height": height, "mark": mark, "encoding": penc}
        )
    return _spec(
        {"data": {"name": "lines"}, "title": title, "concat": views, "columns": columns, "spacing": 28, "resolve": {"scale": {"y": "independent"}}},
        {"lines": list(rows)},
    )


def cost_chart(rows: Sequence[Mapping[str, Any]], log: bool) -> dict[str, Any]:
    """Median seconds per run of each measure as labelled dots (log axis when they span decades).

    rows: {measure, seconds, text}.
    """
    x: dict[str, Any] = {"field": "seconds", "type": "quantitative", "title": "median seconds per run (s)",
                         "scale": {"type": "log"} if log else {"zero": True}}
    seconds = [float(r["seconds"]) for r in rows if r.get("seconds") is not None and float(r["seconds"]) > 0]
    if log and seconds:
        ticks = decade_ticks(min(seconds), max(seconds))
        x["scale"] = {"type": "log", "domain": [ticks[0], ticks[-1]]}
        x["axis"] = {"values": ticks, "format": "~g", "labelOverlap": False, "grid": True}
    return _spec(
        {
            "data": {"name": "cost"},
            "title": "Median seconds per run",
            "width": 420,
            "height": {"step": 24},
            "encoding": {"y": {"field": "measure", "type": "nominal", "sort": None, "title": None, "axis": {"labelLimit": 240}}, "x": x},
            "layer": [
                {
                    "mark": {"type": "point", "filled": True, "size": 80, "color": "#1f5fa8"},
                    "encoding": {"tooltip": [{"field": "measure"}, {"field": "seconds", "format": ".3g", "title": "median s"}]},
                },
                {"mark": {"type": "text", "align": "left", "dx": 8, "fontSize": 11}, "encoding": {"text": {"field": "text"}}},
            ],
        },
        {"cost": list(rows)},
    )


# --- verdict matrix ----------------------------------------------------------------------------------------------

VERDICT_COLOURS = {"holds": "#4e9a4e", "no pooled relation": "#cfe3c4", "undecided": "#f1ead2", "weakens": "#e3b341",
                   "reverses": "#c0392b",
                   "stays reversed": "#eba59c", "direction unknown": "#b9cde0", "not testable": "#d9d9d9"}


def verdict_matrix(rows: Sequence[Mapping[str, Any]], *, title: str, evidence_target: str | None = None) -> dict[str, Any]:
    """Measure × intervention cells coloured by verdict, one block of rows per measure family.

    rows: {family, measure, intervention, verdict, pooled, within, n, evidence}, in display order. With
    ``evidence_target`` the page writes a clicked cell's evidence into that element (``usermeta.clickText``).
    """
    families = list(dict.fromkeys(r["family"] for r in rows))
    colour = {
        "field": "verdict",
        "type": "nominal",
        "title": "relation to the target",
        "scale": {"domain": list(VERDICT_COLOURS), "range": list(VERDICT_COLOURS.values())},
        "legend": {"orient": "top"},
    }
    tooltip = [
        {"field": "measure"}, {"field": "intervention"}, {"field": "verdict"},
        {"field": "pooled", "title": "τ pooled"}, {"field": "within", "title": "τ within each level"},
        {"field": "n", "title": "runs"}, {"field": "evidence"},
    ]
    body: dict[str, Any] = {
        "data": {"name": "cells"},
        "title": title,
        "facet": {"row": {"field": "family", "type": "nominal", "sort": families, "title": None,
                          "header": {"labelAngle": 0, "labelOrient": "left", "labelAlign": "left", "labelFontWeight": "bold",
                                     "labelFontSize": 12, "labelPadding": 6}}},
        "spacing": 6,
        "spec": {
            "width": {"step": 124},
            "height": {"step": 20},
            "encoding": {
                "x": {"field": "intervention", "type": "nominal", "sort": None, "title": "intervention",
                      "axis": {"orient": "top", "labelAngle": 0, "labelOverlap": False, "labelLimit": 118}},
                "y": {"field": "measure", "type": "nominal", "sort": None, "title": None,
                      "axis": {"labelLimit": 240, "labelOverlap": False}},
            },
            "layer": [
                {"mark": {"type": "rect", "stroke": "white", "strokeWidth": 1, "cursor": "pointer"},
                 "encoding": {"color": colour, "tooltip": tooltip}},
                {"mark": {"type": "text", "fontSize": 10.5},
                 "encoding": {"text": {"field": "verdict"}, "tooltip": tooltip,
                              "color": {"condition": {"test": "datum.verdict === 'reverses'", "value": "white"}, "value": "black"}}},
            ],
        },
        "resolve": {"scale": {"y": "independent"}},
    }
    if evidence_target:
        body["usermeta"] = {"clickText": {"field": "evidence", "target": evidence_target, "prefix": ["measure", "intervention", "verdict"]}}
    return _spec(body, {"cells": list(rows)})
