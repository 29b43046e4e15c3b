"""write_report end to end (without a browser): what each section shows, escaping, sampling, size, valid specs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from report_fixtures import EVIL, chart_specs, meta_for, report_ledger, specs_by_label

from analyze.report import render, write_report
from analyze.report.page import vega_bundle

def rank_frame(**overrides: Any) -> pl.DataFrame:
    """A hand-made ranking in analyze.stats.rank_measures' schema (only the columns the report reads)."""
    data = {
        "rank": [1, 2],
        "measure": ["measure.margin_mean", "measure.hessian_trace"],
        "target": ["gen.gap_acc"] * 2,
        "n": [30, 30],
        "kendall_tau": [0.5, -0.25],
        "kendall_ci_low": [0.3, -0.4],
        "kendall_ci_high": [0.7, -0.1],
        "spearman_rho": [0.6, -0.3],
        "pearson_r": [0.55, None],
        "direction": ["as expected", "reversed"],
        "reversed": [False, True],
        "reversal_significant": [False, True],
    }
    data.update(overrides)
    return pl.DataFrame(data)


@pytest.fixture(scope="module")
def small_html(small_report: Path) -> str:
    return small_report.read_text(encoding="utf-8")


def test_full_report_has_every_section_and_no_missing_frame(small_html: str) -> None:
    for anchor in ("verdict", "ranking", "panels", "granulated", "sign_error", "partial", "flags", "paper", "curves", "cost", "runs"):
        assert f"<section id='{anchor}'>" in small_html
    assert "Not computed" not in small_html and "Not shown" not in small_html
    specs = chart_specs(small_html)
    assert len(specs) == int(re.search(r'data-charts="(\d+)"', small_html).group(1)) == small_html.count("class='chart'")
    labels = specs_by_label(small_html)
    for expected in ("ranking of measures", "measures against the target", "granulated Kendall heatmap", "sign-error CDFs",
                     "lambda max vs lr", "margin distributions", "training curves", "cost per measure", "r over training",
                     "sharpness vs test error", "trace vs aceht", "trace vs margin_bound", "correlations with every target"):
        assert expected in labels, expected


def test_run_strings_are_escaped_everywhere(small_html: str) -> None:
    # The fixture puts <script> and an onerror attribute in tags, hyperparameter values, the experiment name, the
    # command, the notes and failure reasons; only the page's own scripts may appear as elements.
    n_charts = len(chart_specs(small_html))
    assert small_html.lower().count("<script") == n_charts + 2
    ours = small_html.replace(vega_bundle().replace("</script", "<\\/script"), "")  # the page without the Vega libraries
    assert len(ours) < len(small_html) - 500_000
    assert "<img" not in ours
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in small_html  # shown as text
    assert "\\u003cscript\\u003ewindow.__pwned" in small_html  # and inside chart data, as JSON escapes


def test_every_spec_compiles_with_vega_lite(small_html: str, big_report: Path) -> None:
    vl_convert = pytest.importorskip("vl_convert")
    for html in (small_html, big_report.read_text(encoding="utf-8")):
        for cid, spec in chart_specs(html).items():
            vega = vl_convert.vegalite_to_vega(spec)  # raises on an invalid Vega-Lite spec
            assert vega["$schema"].startswith("https://vega.github.io/schema/vega/"), cid


def test_verdict_sentences_quote_the_ranking(small_ledger: pl.DataFrame) -> None:
    html = render(small_ledger, {"rank": rank_frame()}, meta_for(small_ledger), sections=["verdict"])
    verdict = html.split("<section id='verdict'>")[1].split("</section>")[0]
    assert "<b>margin_mean</b>: strongly positive τ with <code>gen.gap_acc</code>" in verdict
    assert "τ = +0.500 95% CI [0.30, 0.70], n = 30" in verdict
    assert "τ = -0.250 95% CI [-0.40, -0.10]" in verdict
    assert "opposite to the direction the literature expects — significantly" in verdict
    assert "Not computed: no &#x27;reversal_explanations&#x27; frame" in verdict  # a reversal, but no explanation given
    assert "Not computed: no &#x27;verdict_matrix&#x27; frame" in verdict
    assert "Not computed: no &#x27;flags&#x27; frame" in verdict


def test_ranking_chart_marks_reversed_measures(small_ledger: pl.DataFrame) -> None:
    html = render(small_ledger, {"rank": rank_frame()}, meta_for(small_ledger), sections=["ranking"])
    rows = specs_by_label(html)["ranking of measures"]["datasets"]["ranking"]
    by = {(r["measure_label"], r["coefficient"]): r for r in rows}
    assert by[("hessian_trace  (reversed ⚠)", "Kendall τ")]["direction"] == "reversed"
    assert by[("margin_mean", "Kendall τ")] == {
        "measure_label": "margin_mean", "rank": 1, "coefficient": "Kendall τ", "value": 0.5, "low": 0.3, "high": 0.7, "direction": "as expected"
    }
    assert ("hessian_trace  (reversed ⚠)", "Pearson r") not in by  # a missing coefficient is not drawn


def test_partial_cells_show_the_change_from_the_raw_tau(small_ledger: pl.DataFrame) -> None:
    partial = pl.DataFrame(
        {"measure": ["measure.margin_mean", "measure.margin_mean"], "target": ["gen.gap_acc", "gen.test_acc"],
         "covariates": ["gen.train_loss"] * 2, "kendall_tau": [0.2, -0.9]}
    )
    html = render(small_ledger, {"rank": rank_frame(), "partial": partial}, meta_for(small_ledger), sections=["partial"])
    cells = specs_by_label(html)["partial correlations (partial)"]["datasets"]["cells"]
    assert len(cells) == 1  # the gen.test_acc row belongs to another target
    assert cells[0]["text"] == "+0.20 (Δ -0.30)" and cells[0]["value"] == 0.2


def test_missing_and_malformed_frames_say_so(small_ledger: pl.DataFrame) -> None:
    html = render(small_ledger, {"granulated": pl.DataFrame({"measure": ["measure.a"]})}, meta_for(small_ledger))
    assert "Not computed: no &#x27;rank&#x27; frame was given" in html
    assert "lacks column(s) [&#x27;axis&#x27;, &#x27;psi&#x27;]" in html
    assert "Not computed: no &#x27;curves&#x27; frame" in html
    # The panels need only the ledger, so they still render.
    assert "measures against the target" in html


def test_sections_choose_what_is_rendered(small_ledger: pl.DataFrame, small_frames: dict[str, pl.DataFrame]) -> None:
    html = render(small_ledger, small_frames, meta_for(small_ledger, sections=["flags", "sign-error"]))
    assert re.findall(r"<section id='(\w+)'>", html) == ["header", "sign_error", "flags"]
    with pytest.raises(ValueError, match="unknown section.*'nope'.*choose from header, verdict"):
        render(small_ledger, small_frames, meta_for(small_ledger), sections=["nope"])


def test_panels_use_log_axes_for_measures_spanning_decades(small_html: str) -> None:
    spec = specs_by_label(small_html)["measures against the target"]
    scales = {v["layer"][0]["encoding"]["x"]["title"]: v["layer"][0]["encoding"]["x"]["scale"] for v in spec["concat"]}
    assert scales["hessian_trace (Tr H)"] == {"type": "log"}
    assert scales["margin_mean (logit units)"].get("type") is None
    assert not any(t.startswith("hessian_trace_se") for t in scales)  # diagnostics are not panels
    assert len(spec["datasets"]["runs"]) == 120  # finished runs only


def test_run_links_point_at_the_mlflow_ui(small_ledger: pl.DataFrame) -> None:
    html = render(small_ledger, {}, meta_for(small_ledger, tracking_uri="http://mlflow.example:5000"), sections=["runs"])
    assert 'href="http://mlflow.example:5000/#/runs/run000001?workflowType=machine_learning"' in html
    from_file = render(small_ledger, {}, meta_for(small_ledger, ledger_path="x.csv"), sections=["runs"])
    assert "#/runs/" not in from_file  # run ids of a ledger file are not MLflow runs


def test_ten_thousand_runs_stay_small_and_say_they_were_sampled(big_report: Path) -> None:
    size = big_report.stat().st_size
    assert size < 10 * 1024 * 1024, f"{size / 1e6:.1f} MB"
    html = big_report.read_text(encoding="utf-8")
    labels = specs_by_label(html)
    assert len(labels["measures against the target"]["datasets"]["runs"]) == 5000
    assert "5,000 of 9,998 runs shown (random sample, seed 0)" in html
    curves = labels["training curves"]["datasets"]["lines"]
    assert len({r["run_id"] for r in curves}) == 60
    assert "60 of 9,998 runs&#x27; curves shown" in html
    envs = labels["sign-error CDFs"]["datasets"]["envs"]
    assert len(envs) < 20_000 and "errors are rounded to 0.001 and counted" in html


def test_write_report_creates_folders(tmp_path: Path) -> None:
    ledger = report_ledger(evil=False, n_failed=0).head(10)
    out = write_report(ledger, {}, {"experiment": "x", "target": "gen.gap_acc"}, tmp_path / "a" / "b" / "r.html", sections=["runs"])
    assert out.exists() and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert EVIL not in out.read_text(encoding="utf-8")


def test_a_failing_section_is_reported_in_place(small_ledger: pl.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyze.report import sections

    def broken(inp: Any, page: Any) -> str:
        page.add_chart({"mark": "point"})
        raise RuntimeError("boom <b>")

    monkeypatch.setitem(sections.SECTIONS, "cost", ("Cost", broken))
    with pytest.warns(UserWarning, match="report section 'cost' failed: RuntimeError: boom"):
        html = render(small_ledger, {}, meta_for(small_ledger), sections=["cost", "runs"])
    assert "This section failed to render: RuntimeError: boom &lt;b&gt;" in html
    assert "<section id='runs'>" in html
    assert 'data-charts="0"' in html  # the failed section's chart is dropped with it


def test_scaling_view_draws_each_flatness_measure_against_the_scale(small_ledger: pl.DataFrame) -> None:
    # Alpha scaling (paper 002, appendix C) leaves the function and the gap unchanged and multiplies curvature.
    rows = [
        {"run_id": f"r{s}{a}", "status": "FINISHED", "seed": s, "hp.alpha_scale": a, "hp.lr": 0.1,
         "measure.hessian_trace": 10.0 * a**2 + s, "measure.margin_mean": 2.0 + s, "gen.gap_acc": 0.05 + 0.01 * s}
        for s in range(3)
        for a in (1.0, 10.0, 100.0)
    ]
    ledger = pl.DataFrame(rows)
    html = render(ledger, {}, {"target": "gen.gap_acc"}, sections=["paper"])
    specs = specs_by_label(html)
    trace = specs["hessian_trace vs scale"]
    assert trace["layer"][0]["encoding"]["x"]["scale"] == {"type": "log"}
    assert trace["layer"][0]["encoding"]["y"]["scale"] == {"type": "log"}  # 10 … 100,000 spans decades
    assert sorted({r["_line"] for r in trace["datasets"]["points"]}) == ["0", "1", "2"]  # one line per seed
    assert {"margin_mean vs scale", "gap_acc vs scale"} <= set(specs)
    assert "Measures before and after alpha scale" in html


def test_verdict_separates_breaks_from_untested_groups(small_ledger: pl.DataFrame) -> None:
    flags = pl.DataFrame(
        {"flag": ["too_small", "sign_reversal", "too_small"], "measure": ["measure.a", "measure.margin_mean", "measure.b"],
         "target": ["gen.gap_acc"] * 3, "group": ["x", "adam", "y"], "sentence": ["small 1", "margin_mean reverses in adam.", "small 2"]}
    )
    html = render(small_ledger, {"rank": rank_frame(), "flags": flags}, meta_for(small_ledger), sections=["verdict", "flags"])
    verdict = html.split("<section id='verdict'>")[1].split("</section>")[0]
    assert "1 break(s) flagged</b> (1 × sign_reversal)" in verdict
    assert "<li>margin_mean reverses in adam.</li>" in verdict and "small 1" not in verdict
    assert "2 relationship(s) were not tested" in verdict
    table = html.split("<section id='flags'>")[1]
    assert table.index("sign_reversal") < table.index("too_small")  # breaks first
    only_small = render(small_ledger, {"flags": flags.filter(pl.col("flag") == "too_small")}, meta_for(small_ledger), sections=["verdict"])
    assert "No break was flagged, but the report was not told how many relationships were tested" in only_small


def test_long_curves_are_thinned_and_counters_dropped(small_ledger: pl.DataFrame) -> None:
    ids = small_ledger.filter(pl.col("status") == "FINISHED")["run_id"].to_list()[:50]
    steps = list(range(0, 1000, 2))  # 500 evaluations × 2 metrics × 50 runs = 50,000 points
    curves = pl.DataFrame(
        [{"run_id": r, "metric": m, "step": s, "value": float(s)} for r in ids for m in ("train_loss", "epoch") for s in steps]
        + [{"run_id": r, "metric": "test_acc", "step": s, "value": 0.5} for r in ids for s in steps],
        schema={"run_id": pl.Utf8, "metric": pl.Utf8, "step": pl.Int64, "value": pl.Float64},
    )
    html = render(small_ledger, {"curves": curves}, meta_for(small_ledger), sections=["curves"])
    rows = specs_by_label(html)["training curves"]["datasets"]["lines"]
    assert {r["metric"] for r in rows} == {"train loss (nats)", "test accuracy (fraction)"}  # epoch is a counter
    assert len(rows) <= 5_000 + 2 * 50  # MAX_CURVE_POINTS, plus each curve's last point
    last = {(r["run_id"], r["metric"]): r["step"] for r in rows}
    assert set(last.values()) == {998.0} and len(last) == 2 * 50  # every curve keeps its last evaluation
    assert "One evaluation in 10 (and the last)" in html


def test_ledger_warnings_head_the_report(small_ledger: pl.DataFrame) -> None:
    """What ``analyze.ledger.prepare`` warns about (repeated configurations, runs stopped before their target) is
    printed above the verdict, escaped, not only on stderr."""
    html = render(small_ledger, {}, meta_for(small_ledger, warnings=["12 of 20 runs stopped <before> their target"]),
                  sections=["verdict"])
    head = html[: html.find("<h2")]
    assert "Read this before the verdict" in head and "12 of 20 runs stopped &lt;before&gt; their target" in head
    assert "Read this before the verdict" not in render(small_ledger, {}, meta_for(small_ledger), sections=["verdict"])
