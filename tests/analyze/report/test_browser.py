"""The report in headless Debian Chromium, from file:// with every network request refused: every declared chart
renders, nothing is logged to the console as an error, no request leaves the machine, injected markup stays text,
brushing links the panels; screenshots are saved in the test's temporary folder for a human to look at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from report_fixtures import EVIL

pytestmark = pytest.mark.browser

RENDER_TIMEOUT_MS = 60_000


def open_report(context: Any, path: Path) -> tuple[Any, list[str], list[str]]:
    """Load the report with the network blocked; returns (page, console errors, non-file requests)."""
    errors: list[str] = []
    outside: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith("file:"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page = context.new_page()
    page.route("**/*", route)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith(("file:", "data:", "blob:")) else outside.append(r.url))
    page.goto(path.resolve().as_uri())
    page.wait_for_function(
        "() => +document.body.dataset.rendered + +document.body.dataset.failed >= +document.body.dataset.charts",
        timeout=RENDER_TIMEOUT_MS,
    )
    return page, errors, outside


def check_rendered(page: Any, errors: list[str], outside: list[str], shot: Path) -> int:
    declared = int(page.evaluate("document.body.dataset.charts"))
    drawn = page.evaluate("document.querySelectorAll('.chart svg.marks, .chart canvas.marks').length")
    page.screenshot(path=str(shot), full_page=True)
    assert declared > 0
    assert page.evaluate("document.body.dataset.failed") == "0"
    assert drawn == declared
    assert errors == []
    assert outside == []
    assert shot.stat().st_size > 10_000
    return declared


def test_small_report_renders_offline_runs_no_injected_script_and_links_panels(
    browser_context: Any, small_report: Path, tmp_path: Path
) -> None:
    page, errors, outside = open_report(browser_context, small_report)
    try:
        check_rendered(page, errors, outside, tmp_path / "small.png")
        assert page.evaluate("window.__pwned") is None
        assert EVIL in page.inner_text("body")  # the tag shows as text

        # Brushing: drag a rectangle over part of the first panel; the same runs turn grey in every panel.
        grey = "rgb(200, 200, 200)"  # charts.GREY, #c8c8c8
        count = (
            "(name) => Array.from(document.querySelectorAll('#panels .' + name + '_marks path'))"
            ".filter(p => getComputedStyle(p).fill === '" + grey + "').length"
        )
        assert page.evaluate(count, "points0") == 0  # nothing greyed before brushing
        panel = page.locator("#panels .points0_marks")
        panel.scroll_into_view_if_needed()
        box = panel.bounding_box()
        page.mouse.move(box["x"] + 2, box["y"] + 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=5)
        page.mouse.up()
        page.wait_for_timeout(300)
        total = page.locator("#panels .points1_marks path").count()
        grey0, grey1, grey2 = (page.evaluate(count, f"points{i}") for i in range(3))
        page.screenshot(path=str(tmp_path / "brushed.png"))
        assert 0 < grey1 < total  # some runs are outside the brush, some inside
        assert grey0 == grey1 == grey2  # the same runs are greyed in every panel
        assert errors == [] and outside == []
    finally:
        page.close()


def test_ten_thousand_run_report_renders(browser_context: Any, big_report: Path, tmp_path: Path) -> None:
    assert big_report.stat().st_size < 10 * 1024 * 1024
    page, errors, outside = open_report(browser_context, big_report)
    try:
        check_rendered(page, errors, outside, tmp_path / "big.png")
    finally:
        page.close()
