"""A self-contained HTML page: Vega/Vega-Lite/vega-embed inlined once, chart specs as escaped JSON, no network.

Every string that reaches the page goes through ``escape`` (HTML text and attributes) or ``json_for_script`` (chart
specs inside ``<script type="application/json">``), so a run name or tag such as ``<script>…`` shows as text.
A Content-Security-Policy forbids every network fetch, so the opened file makes no request even by accident.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Callable, Mapping

import polars as pl


@cache
def vega_bundle() -> str:
    """The Vega, Vega-Lite and vega-embed JavaScript (from vl-convert; works offline and from file://).

    Bundling takes vl-convert ~2.5 CPU seconds and gives the same text for one vl-convert version, so it is kept in
    ``<cache>/flatlas/vega-bundle-<version>.js`` (``$XDG_CACHE_HOME`` or ``~/.cache``); an unwritable cache folder
    only means bundling again next time.
    """
    import vl_convert

    version = getattr(vl_convert, "__version__", None)
    path = _cache_dir() / f"vega-bundle-{version}.js" if version else None
    if path is not None and path.is_file():
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            pass
    text = vl_convert.javascript_bundle()
    if path is not None:
        try:  # written beside and renamed, so a concurrent report never reads half a file
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_suffix(f".{os.getpid()}.part")
            part.write_text(text, encoding="utf-8")
            os.replace(part, path)
        except OSError:
            pass
    return text


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flatlas"


def escape(value: Any) -> str:
    """HTML-escape any value (None → empty) for text and quoted attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def json_for_script(spec: Mapping[str, Any]) -> str:
    """JSON safe inside a <script> element: '<', '>' and '&' escaped so no run string can close the tag."""
    text = json.dumps(spec, default=str, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


CHART_DIGITS = 6  # significant digits of the numbers a chart carries (display only; tables and JSON keep all)


def sanitize(spec: Any) -> Any:
    """Replace NaN/inf in a chart spec (JSON has no NaN) with null, and round floats to ``CHART_DIGITS``
    significant digits, recursively: a float64 printed in full takes 17-20 characters, which makes a 2,187-run
    report 6.2 MB; six digits are more than a chart axis or tooltip can show."""
    if isinstance(spec, dict):
        return {k: sanitize(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [sanitize(v) for v in spec]
    if isinstance(spec, float):
        return float(f"{spec:.{CHART_DIGITS}g}") if math.isfinite(spec) else None
    return spec


def fmt_number(v: float, digits: int = 3) -> str:
    """A float for reading: fixed point in the usual range, scientific for tiny or huge magnitudes."""
    if v is None or not math.isfinite(v):
        return ""
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4):
        return f"{v:.{digits}g}"
    return f"{v:.{digits}f}"


SHORT_TEXT = 24  # text cells up to this many characters never wrap (a label broken over two lines reads as two)


def table(
    frame: pl.DataFrame,
    digits: int = 3,
    max_rows: int = 500,
    sortable: bool = True,
    links: Mapping[str, Callable[[Any], str | None]] | None = None,
    css: str = "",
    wide: tuple[str, ...] = (),
    notes: str | None = "note",
    scroll: bool = False,
) -> str:
    """An HTML table of a polars frame; every cell escaped; floats rounded for reading; ``links`` turn a column's
    cells into links (the function maps a cell value to a URL, or None for plain text); ``wide`` columns hold prose.

    The ``notes`` column (prose that would widen the table past the screen) is listed under the table instead, each
    distinct note once, numbered, and the row's first cell carries its number as ``[k]``. ``scroll`` puts the table
    (not its notes) in a box that scrolls when the table is taller or wider than the page.
    """
    links = links or {}
    note_texts: list[str | None] = [None] * min(len(frame), max_rows)
    if notes and notes in frame.columns:
        note_texts = [None if v is None or str(v) == "" else str(v) for v in frame[notes].head(max_rows).to_list()]
        frame = frame.drop(notes)
    numbers = {t: i + 1 for i, t in enumerate(dict.fromkeys(t for t in note_texts if t))}
    head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    rows = []
    for row, note_text in zip(frame.head(max_rows).iter_rows(), note_texts):
        cells = []
        for col, v in zip(frame.columns, row):
            if isinstance(v, float):
                text = fmt_number(v, digits)
                sort_key = escape(v) if math.isfinite(v) else ""
                cells.append(f'<td class="num" data-v="{sort_key}">{escape(text)}</td>')
            elif isinstance(v, int) and not isinstance(v, bool):
                cells.append(f'<td class="num" data-v="{v}">{v}</td>')
            elif col in links and v is not None and links[col](v):
                cells.append(f'<td><a href="{escape(links[col](v))}">{escape(v)}</a></td>')
            elif col in wide:
                cells.append(f"<td class='wide'>{escape(v)}</td>")
            elif v is not None and len(str(v)) <= SHORT_TEXT:
                cells.append(f"<td class='short'>{escape(v)}</td>")
            else:
                cells.append(f"<td>{escape(v)}</td>")
        if note_text and cells:
            cells[0] = cells[0].replace("</td>", f" <sup class='tn'>[{numbers[note_text]}]</sup></td>", 1)
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p class='note'>{len(frame) - max_rows} more rows not shown.</p>" if len(frame) > max_rows else ""
    listed = "".join(f"<li>{escape(t)}</li>" for t in numbers)
    below = f"<ol class='table-notes'>{listed}</ol>" if listed else ""
    cls = " ".join(c for c in ("sortable" if sortable else "", css) if c)
    html = f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    if scroll:
        html = f"<div class='scroll'>{html}</div>"
    return f"{html}{below}{more}"


@dataclass
class Section:
    """One titled part of the page; ``anchor`` is its id for the table of contents."""

    anchor: str
    title: str
    body: str


@dataclass
class Page:
    """Sections of HTML and chart specs, rendered into one file with one copy of the Vega libraries."""

    title: str
    sections: list[Section] = field(default_factory=list)
    charts: list[tuple[str, dict, str]] = field(default_factory=list)

    def add_chart(self, spec: Mapping[str, Any], renderer: str = "svg", label: str = "") -> str:
        """Register a Vega-Lite spec; returns the placeholder element it will be drawn into.

        ``renderer`` is "svg" (crisp text) or "canvas" (for thousands of marks); ``label`` is an accessible name.
        """
        if renderer not in ("svg", "canvas"):
            raise ValueError(f"renderer must be 'svg' or 'canvas', not {renderer!r}")
        chart_id = f"chart{len(self.charts)}"
        self.charts.append((chart_id, sanitize(dict(spec)), renderer))
        return f"<div class='chart' id='{chart_id}' role='img' aria-label='{escape(label)}'></div>"

    def add_section(self, anchor: str, title: str, body: str) -> None:
        self.sections.append(Section(anchor, title, body))

    def render(self) -> str:
        specs = "\n".join(
            f"<script type='application/json' id='{cid}-spec' data-renderer='{r}'>{json_for_script(spec)}</script>"
            for cid, spec, r in self.charts
        )
        nav = " · ".join(f"<a href='#{escape(s.anchor)}'>{escape(s.title)}</a>" for s in self.sections if s.title)
        body = "\n".join(
            f"<section id='{escape(s.anchor)}'>" + (f"<h2>{escape(s.title)}</h2>" if s.title else "") + s.body + "</section>"
            for s in self.sections
        )
        return TEMPLATE.format(
            title=escape(self.title),
            nav=nav,
            body=body,
            specs=specs,
            bundle=vega_bundle().replace("</script", "<\\/script"),
            n_charts=len(self.charts),
        )


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 1.5em auto; max-width: 1280px; color: #222; padding: 0 1em; line-height: 1.4; }}
h1 {{ font-size: 1.6em; margin-bottom: .3em; }} h2 {{ border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.8em; }}
h3 {{ margin: 1.2em 0 .3em; font-size: 1.05em; }} section {{ scroll-margin-top: 2.5em; }}
nav {{ font-size: .85em; position: sticky; top: 0; background: #fff; padding: .4em 0; border-bottom: 1px solid #eee; z-index: 10; }}
table {{ border-collapse: collapse; font-size: .82em; margin: .5em 0; }}
th, td {{ border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }} table.sortable th {{ cursor: pointer; }} table.sortable th:hover {{ background: #e8e8e8; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
.note {{ color: #666; font-size: .85em; }} .missing {{ color: #8a6d00; font-size: .9em; font-style: italic; }}
.chart {{ display: inline-block; margin: .4em; vertical-align: top; max-width: 100%; overflow-x: auto; }}
.flag {{ color: #a40000; }} .good {{ color: #1a6e1a; }} code {{ background: #f4f4f4; padding: 1px 4px; overflow-wrap: anywhere; }}
.verdict li {{ margin: .35em 0; }} .num-aside {{ color: #444; font-size: .9em; font-variant-numeric: tabular-nums; }}
.side {{ display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }} .side > div {{ flex: 1 1 420px; }}
td.wide {{ min-width: 30em; }} td.short {{ white-space: nowrap; }}
.evidence {{ background: #f7f7f2; border-left: 3px solid #bbb; padding: .4em .7em; font-size: .9em; max-width: 60em; }}
ol.table-notes {{ font-size: .8em; color: #555; margin: .2em 0 .8em; padding-left: 2.2em; max-width: 70em; }}
sup.tn {{ color: #555; }}
.scroll {{ max-height: 32em; overflow: auto; display: inline-block; max-width: 100%; }}
.vega-embed {{ display: inline-flex !important; flex-direction: column; }} .vega-bindings {{ order: -1; font-size: .9em; margin: .2em 0 .4em; }}
</style></head>
<body data-charts="{n_charts}" data-rendered="0" data-failed="0">
<nav>{nav}</nav>
{body}
{specs}
<script>{bundle}</script>
<script>
(function () {{
  var rendered = 0, failed = 0;
  window.flatlasViews = {{}};  // chart id -> Vega view, for inspection from the console
  document.querySelectorAll('.chart').forEach(function (el) {{
    var node = document.getElementById(el.id + '-spec');
    var spec = JSON.parse(node.textContent);
    vegaEmbed('#' + el.id, spec, {{actions: false, renderer: node.dataset.renderer || 'svg'}})
      .then(function (result) {{
        window.flatlasViews[el.id] = result.view;
        var click = spec.usermeta && spec.usermeta.clickText;  // a clicked mark's text field is written into an element
        if (click) {{
          result.view.addEventListener('click', function (event, item) {{
            var d = item && item.datum, out = document.getElementById(click.target);
            if (!d || !out || d[click.field] === undefined) return;
            var lead = (click.prefix || []).map(function (k) {{ return d[k]; }}).filter(function (v) {{ return v !== undefined && v !== ''; }});
            out.textContent = (lead.length ? lead.join(' · ') + ': ' : '') + d[click.field];
          }});
        }}
        rendered += 1; document.body.dataset.rendered = rendered;
      }})
      .catch(function (err) {{ failed += 1; document.body.dataset.failed = failed; console.error('chart ' + el.id + ': ' + err); }});
  }});
  document.querySelectorAll('table.sortable th').forEach(function (th) {{
    th.title = 'click to sort';
    th.addEventListener('click', function () {{
      var table = th.closest('table'), body = table.tBodies[0], col = Array.prototype.indexOf.call(th.parentNode.children, th);
      var asc = th.dataset.asc !== 'true'; th.dataset.asc = asc;
      var rows = Array.prototype.slice.call(body.rows);
      function key(cell) {{
        if (cell.dataset.v === undefined) return cell.textContent;
        return cell.dataset.v === '' ? NaN : parseFloat(cell.dataset.v);
      }}
      rows.sort(function (a, b) {{
        var x = key(a.cells[col]), y = key(b.cells[col]);
        if (typeof x === 'number' && isNaN(x)) return 1;
        if (typeof y === 'number' && isNaN(y)) return -1;
        return (x > y ? 1 : x < y ? -1 : 0) * (asc ? 1 : -1);
      }});
      rows.forEach(function (r) {{ body.appendChild(r); }});
    }});
  }});
}})();
</script>
</body></html>
"""
