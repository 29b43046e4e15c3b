"""The page shell: escaping of every run string, script-safe JSON, tables, one inlined copy of the Vega bundle."""

from __future__ import annotations

import json
import math

import polars as pl

from analyze.report.page import Page, escape, json_for_script, sanitize, table, vega_bundle

EVIL = "<script>alert(1)</script>"


def test_escape_turns_markup_into_text() -> None:
    assert escape(EVIL) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert escape('"\'') == "&quot;&#x27;"
    assert escape(None) == ""


def test_json_for_script_cannot_close_the_script_element() -> None:
    spec = {"title": "</script><script>alert(1)</script>", "x": "a & b", "y": "-->"}
    text = json_for_script(spec)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == spec  # the escapes are JSON escapes: the browser reads back the same strings


def test_sanitize_replaces_non_finite_numbers_with_null() -> None:
    spec = {"a": [1.0, math.nan, math.inf], "b": {"c": -math.inf, "d": "nan"}}
    assert sanitize(spec) == {"a": [1.0, None, None], "b": {"c": None, "d": "nan"}}


def test_table_escapes_cells_headers_and_links() -> None:
    frame = pl.DataFrame({EVIL: [EVIL], "run_id": ['r"1'], "x": [0.123456], "n": [3]})
    html = table(frame, links={"run_id": lambda v: f"http://h/#/runs/{v}"})
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert 'href="http://h/#/runs/r&quot;1"' in html
    assert 'data-v="0.123456"' in html and ">0.123<" in html
    assert 'data-v="3"' in html


def test_table_reports_rows_left_out() -> None:
    html = table(pl.DataFrame({"a": list(range(10))}), max_rows=4)
    assert html.count("<tr>") == 5  # header + 4 rows
    assert "6 more rows not shown" in html


def test_page_inlines_the_bundle_once_and_declares_its_charts() -> None:
    page = Page(title=EVIL)
    body = "".join(page.add_chart({"mark": "point", "title": EVIL}) for _ in range(3))
    page.add_section("s", "Section " + EVIL, body)
    html = page.render()
    bundle = vega_bundle()
    marker = bundle[len(bundle) // 2 : len(bundle) // 2 + 200]  # a stretch from the middle of the libraries
    assert html.count(marker.replace("</script", "<\\/script")) == 1
    assert 'data-charts="3"' in html
    assert html.count("class='chart'") == 3
    assert html.lower().count("<script") == 3 + 2  # three specs, the bundle, the page script: nothing from a run
    head = html.split("<body")[0]
    assert "<link" not in head and "src=" not in head  # no stylesheet or script fetched
    assert "default-src 'none'" in html  # the CSP forbids every fetch
