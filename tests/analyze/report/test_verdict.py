"""The verdict section and the report details (without a browser): the measure × intervention matrix,
flags that say what was tested, mission measures always drawn, diagnostics kept apart, granulated cells from too few
runs, an empty sign-error explained, notes under tables, decade ticks, the 2/η line for full-batch GD only, and the
paper-002 panel naming what was not computed."""

from __future__ import annotations

import polars as pl
import pytest
from report_fixtures import meta_for, specs_by_label

from analyze.report import render
from analyze.report.charts import decade_ticks
from analyze.report.page import table
from analyze.report.paper import full_batch_gd


def section(html: str, name: str) -> str:
    return html.split(f"<section id='{name}'>")[1].split("</section>")[0]


def matrix_frame() -> pl.DataFrame:
    """A verdict_matrix in the agreed schema (interfaces.md §4), families out of order on purpose."""
    rows = [
        ("measure.sharpness", "sharpness", "batch_size", "holds", 2),
        ("measure.margin_mean", "margins", "attack_size", "reverses", 0),
        ("measure.margin_mean", "margins", "batch_size", "holds", 0),
        ("measure.hessian_trace", "Hessian trace", "attack_size", "not_testable", 1),
        ("measure.l2_norm", "norms", "optimizer+lr", "weakens", 3),
    ]
    return pl.DataFrame(
        [{"measure": m, "family": f, "target": "gen.gap_acc", "intervention": i, "axes": [f"hp.{i}"], "verdict": v,
          "tau_pooled": 0.4, "tau_within": "0: -0.41; 200: +0.10", "n_runs": 32, "evidence": f"{m} {v} along {i} (τ = +0.40)",
          "sort_key": k} for m, f, i, v, k in rows]
    )


def test_matrix_opens_the_verdict_grouped_by_family_with_evidence(small_ledger: pl.DataFrame) -> None:
    frames = {
        "verdict_matrix": matrix_frame(),
        "verdict_sentences": pl.DataFrame({"sentence": ["First sentence.", "Second <b>sentence</b>."]}),
        "reversal_explanations": pl.DataFrame(
            {"measure": ["measure.margin_mean"], "target": ["gen.gap_acc"], "tau_pooled": [0.76], "ci_low": [0.5], "ci_high": [0.9],
             "explained_by": ["attack_size"], "sentence": ["margin_mean is reversed overall (τ = +0.76) because of the attack set."]}),
    }
    html = render(small_ledger, frames, meta_for(small_ledger), sections=["verdict"])
    verdict = section(html, "verdict")
    assert verdict.index("class='chart'") < verdict.index("First sentence.") < verdict.index("because of the attack set")
    assert "Second &lt;b&gt;sentence&lt;/b&gt;." in verdict  # escaped
    spec = specs_by_label(html)["verdict matrix"]
    cells = spec["datasets"]["cells"]
    assert [c["family"] for c in cells] == ["margins", "margins", "norms", "Hessian trace", "sharpness"]
    assert spec["facet"]["row"]["sort"] == ["margins", "norms", "Hessian trace", "sharpness"]
    assert {c["verdict"] for c in cells} == {"holds", "reverses", "weakens", "not testable"}
    assert cells[0]["evidence"] == "measure.margin_mean reverses along attack_size (τ = +0.40)"
    assert {"field": "evidence"} in spec["spec"]["layer"][0]["encoding"]["tooltip"]
    assert spec["usermeta"]["clickText"]["target"] == "verdict-evidence" and "id='verdict-evidence'" in verdict
    assert "1 measure(s) relate to gap_acc with the sign the literature does not expect</b>; 1 of them are explained" in verdict


def test_holding_a_reversed_or_absent_relation_is_not_shown_as_holds(small_ledger: pl.DataFrame) -> None:
    m = matrix_frame().with_columns(pl.Series("pooled_relation", ["none", "reversed", "reversed", "expected", "expected"]))
    html = render(small_ledger, {"verdict_matrix": m}, meta_for(small_ledger), sections=["verdict"])
    cells = {(c["measure"], c["intervention"]): c["verdict"] for c in specs_by_label(html)["verdict matrix"]["datasets"]["cells"]}
    assert cells[("margin_mean", "batch_size")] == "stays reversed"  # holds, but what holds is a reversal
    assert cells[("margin_mean", "attack_size")] == "reverses"
    assert cells[("sharpness", "batch_size")] == "no pooled relation"


def test_no_break_only_when_relationships_were_tested(small_ledger: pl.DataFrame) -> None:
    flags = pl.DataFrame({"flag": ["too_small"], "measure": ["measure.a"], "target": ["gen.gap_acc"], "sentence": ["small"]})
    none = pl.DataFrame({"axis": ["batch_size"], "n_relationships": [4], "n_tested": [0], "n_untestable": [4]})
    some = pl.DataFrame({"axis": ["batch_size", "dropout"], "n_relationships": [4, 4], "n_tested": [4, 1], "n_untestable": [0, 3]})
    html = section(render(small_ledger, {"flags": flags, "flag_coverage": none}, meta_for(small_ledger), sections=["verdict"]), "verdict")
    assert "No break was flagged" not in html and "No relationship could be tested for a break" in html
    empty = flags.head(0)  # no flag at all is still a flags frame
    html = section(render(small_ledger, {"flags": empty, "flag_coverage": some}, meta_for(small_ledger), sections=["verdict"]), "verdict")
    assert "No break was flagged among the 5 measure × intervention relationship(s) tested." in html
    assert "3 relationship(s) were not tested" in html


def test_mission_measures_are_always_drawn_and_diagnostics_never(small_ledger: pl.DataFrame) -> None:
    ledger = small_ledger.with_columns(
        [pl.col("measure.margin_mean").mul(1 + 0.01 * i).alias(f"measure.margin_q{i}") for i in range(14)]
        + [pl.col("measure.lambda_max").alias("measure.pacbayes_flatness"),
           pl.col("measure.hessian_trace_se").alias("diag.hessian_trace_se"), pl.lit(7).alias("diag.hessian_trace_n_hvp")]
    ).drop("measure.hessian_trace_se")
    margins = [f"measure.margin_q{i}" for i in range(14)]
    order = margins + ["measure.margin_mean", "measure.margin_skew", "measure.pacbayes_flatness", "measure.sharpness",
                       "measure.lambda_max", "measure.hessian_trace"]
    rank = pl.DataFrame({"rank": range(1, len(order) + 1), "measure": order, "target": ["gen.gap_acc"] * len(order),
                         "n": [120] * len(order), "kendall_tau": [0.9 - 0.01 * i for i in range(len(order))]})
    html = render(ledger, {"rank": rank}, meta_for(ledger), sections=["panels", "runs"])
    panels = specs_by_label(html)["measures against the target"]
    titles = [v["title"].split("  (")[0] for v in panels["concat"]]
    assert titles[:4] == ["hessian_trace", "lambda_max", "sharpness", "pacbayes_flatness"]  # ranked last, drawn first
    assert len(titles) == 12 and titles[4:] == [f"margin_q{i}" for i in range(8)]
    trace = panels["concat"][0]["layer"][0]["encoding"]["tooltip"]
    assert {t["title"] for t in trace} >= {"hessian_trace_se", "hessian_trace_n_hvp"}  # diagnostics on hover
    assert not any("hessian_trace_se" in t for t in titles)
    runs = section(html, "runs")
    assert "<th>diag.hessian_trace_se</th>" in runs and "<th>diag.hessian_trace_n_hvp</th>" in runs


def test_granulated_cells_from_two_configurations_say_not_enough_runs(small_ledger: pl.DataFrame) -> None:
    g = pl.DataFrame({
        "measure": ["measure.margin_mean"] * 3, "target": ["gen.gap_acc"] * 3, "axis": ["hp.dropout", "hp.lr", "ALL"],
        "psi": [1.0, 0.4, 0.7], "n_cells": [6, 4, 10], "n_cells_undefined": [0, 0, 0], "n_points": [12, 20, 24],
        "note": [None, None, None]})
    html = render(small_ledger, {"granulated": g}, meta_for(small_ledger), sections=["granulated"])
    cells = {c["x"]: c for c in specs_by_label(html)["granulated Kendall heatmap"]["datasets"]["cells"]}
    assert cells["dropout"]["text"] == "not enough runs" and cells["dropout"]["value"] is None  # 12 points in 6 cells
    assert cells["lr"]["text"] == "+0.40"
    spec = specs_by_label(html)["granulated Kendall heatmap"]
    assert spec["encoding"]["x"]["sort"] == ["dropout", "lr", "Ψ (mean over axes)"]
    assert spec["encoding"]["x"]["axis"]["labelOverlap"] is False  # every column labelled
    only_small = g.filter(pl.col("axis") != "hp.lr")
    html = render(small_ledger, {"granulated": only_small}, meta_for(small_ledger), sections=["granulated"])
    assert "granulated Kendall heatmap" not in specs_by_label(html)
    assert "No hyperparameter axis can be scored by granulated Kendall" in section(html, "granulated")


def test_empty_sign_error_says_why_and_what_fixes_it(small_ledger: pl.DataFrame) -> None:
    se = pl.DataFrame({"measure": ["measure.margin_mean"] * 2, "target": ["gen.gap_acc"] * 2, "axis": ["hp.lr", "ALL"],
                       "mean": [None, None], "p90": [None, None], "max": [None, None],
                       "note": ["none of the 4 environments reaches an effective sample size of 12; lower --min-ess or add seeds", None]},
                      schema_overrides={"mean": pl.Float64, "p90": pl.Float64, "max": pl.Float64})
    envs = pl.DataFrame(schema={"measure": pl.Utf8, "target": pl.Utf8, "axis": pl.Utf8, "error": pl.Float64, "ess": pl.Float64})
    html = render(small_ledger, {"sign_error": se, "sign_error_envs": envs}, meta_for(small_ledger), sections=["sign_error"])
    body = section(html, "sign_error")
    assert "No environment could be scored" in body
    assert "lr: none of the 4 environments reaches an effective sample size of 12" in body
    assert "--seeds 0-4" in body and "--min-ess" in body
    assert "class='chart'" not in body  # no empty chart


def test_notes_move_under_the_table() -> None:
    frame = pl.DataFrame({"measure": ["a", "b", "c"], "tau": [0.1, None, None], "note": [None, "constant", "constant"]})
    html = table(frame, scroll=True)
    assert "<th>note</th>" not in html
    assert html.count("<sup class='tn'>[1]</sup>") == 2
    assert html.index("</table></div>") < html.index("<ol class='table-notes'><li>constant</li></ol>")


def test_decade_ticks() -> None:
    assert decade_ticks(0.005, 0.75) == [0.001, 0.01, 0.1, 1.0]
    assert decade_ticks(2.0, 3.0) == [1.0, 10.0]
    assert decade_ticks(1e-3, 1e5) == [1e-3, 1e-1, 1e1, 1e3, 1e5]  # at most 7 labels


def test_cost_axis_is_labelled_at_decades(small_ledger: pl.DataFrame) -> None:
    cost = pl.DataFrame({"measure": ["margins", "hessian_trace"], "median_seconds": [0.005, 20.0], "ratio_to_cheapest": [1.0, 4000.0]})
    spec = specs_by_label(render(small_ledger, {"cost": cost}, meta_for(small_ledger), sections=["cost"]))["cost per measure"]
    axis = spec["encoding"]["x"]["axis"]
    assert axis["values"] == [0.001, 0.01, 0.1, 1.0, 10.0, 100.0] and axis["labelOverlap"] is False


@pytest.mark.parametrize(
    ("row", "gd"),
    [
        ({"hp.optimizer": "sgd", "hp.batch_size": 1000, "hp.n_train": 1000, "hp.attack_size": 0, "hp.momentum": 0.0}, True),
        ({"hp.optimizer": "sgd", "hp.batch_size": 1000, "hp.n_train": 1000, "hp.attack_size": 200, "hp.momentum": 0.0}, False),
        ({"hp.optimizer": "adam", "hp.batch_size": 1000, "hp.n_train": 1000, "hp.attack_size": 0, "hp.momentum": 0.0}, False),
        ({"hp.optimizer": "sgd", "hp.batch_size": 32, "hp.n_train": 1000, "hp.attack_size": 0, "hp.momentum": 0.0}, False),
        ({"hp.optimizer": "sgd", "hp.batch_size": 1000, "hp.n_train": 1000, "hp.attack_size": 0, "hp.momentum": 0.9}, False),
    ],
)
def test_full_batch_gd(row: dict, gd: bool) -> None:
    assert full_batch_gd(pl.DataFrame([row])).to_list() == [gd]


def test_edge_of_stability_line_only_for_full_batch_gd(small_ledger: pl.DataFrame) -> None:
    ledger = small_ledger.with_columns(pl.lit(1000).alias("hp.n_train"), pl.lit(0.0).alias("hp.momentum"))
    html = render(ledger, {}, meta_for(ledger), sections=["paper"])
    spec = specs_by_label(html)["lambda max vs lr"]
    assert len(spec["layer"]) == 1 and "no full-batch gradient-descent run" in spec["title"]["subtitle"]  # batches ≤ 512
    full = ledger.with_columns(pl.lit(1000).alias("hp.batch_size"))
    html = render(full, {}, meta_for(full), sections=["paper"])
    spec = specs_by_label(html)["lambda max vs lr"]
    rows = spec["datasets"]["points"]
    assert {r["gd"] for r in rows} == {True, False}  # sgd runs are GD, adam runs are not
    assert spec["layer"][1]["transform"][0] == {"filter": "datum['gd'] === true"}
    assert "full-batch GD" in section(html, "paper")


def test_volume_panel_says_log_volume_was_not_computed(small_ledger: pl.DataFrame) -> None:
    html = section(render(small_ledger, {}, meta_for(small_ledger), sections=["paper"]), "paper")
    assert "sharpness vs test error" in html
    assert "log_volume was not computed in this sweep, so only sharpness is drawn" in html
