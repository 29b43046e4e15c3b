"""A self-contained HTML page: Vega/Vega-Lite/vega-embed inlined once, chart specs as escaped JSON, no network."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Mapping, Sequence

import polars as pl


@cache
def vega_bundle() -> str:
    """The Vega, Vega-Lite and vega-embed JavaScript (from vl-convert; works offline and from file://)."""
    import vl_convert

    return vl_convert.javascript_bundle()


def escape(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def json_for_script(spec: Mapping[str, Any]) -> str:
    """JSON safe inside a <script> element: '<', '>' and '&' escaped so no run string can close the tag."""
    text = json.dumps(spec, default=str, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    return value


def sanitize(spec: Any) -> Any:
    """Replace NaN/inf in a chart spec (JSON has no NaN) with null, recursively."""
    if isinstance(spec, dict):
        return {k: sanitize(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [sanitize(v) for v in spec]
    if isinstance(spec, float) and (spec != spec or spec in (float("inf"), float("-inf"))):
        return None
    return spec


def table(frame: pl.DataFrame, digits: int = 3, max_rows: int = 500, sortable: bool = True) -> str:
    """An HTML table of a polars frame; every cell escaped; floats rounded for reading."""
    head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    rows = []
    for row in frame.head(max_rows).iter_rows():
        cells = []
        for v in row:
            if isinstance(v, float):
                text = "" if v != v else (f"{v:.{digits}g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.{digits}f}")
                cells.append(f'<td class="num" data-v="{escape(v)}">{escape(text)}</td>')
            else:
                cells.append(f"<td>{escape(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p class='note'>{len(frame) - max_rows} more rows not shown.</p>" if len(frame) > max_rows else ""
    cls = "sortable" if sortable else ""
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


@dataclass
class Page:
    """Sections of HTML and chart specs, rendered into one file."""

    title: str
    sections: list[str] = field(default_factory=list)
    charts: list[tuple[str, dict]] = field(default_factory=list)

    def add_chart(self, spec: dict) -> str:
        chart_id = f"chart{len(self.charts)}"
        self.charts.append((chart_id, sanitize(spec)))
        return f"<div class='chart' id='{chart_id}'></div>"

    def render(self) -> str:
        specs = "\n".join(
            f"<script type='application/json' id='{cid}-spec'>{json_for_script(spec)}</script>" for cid, spec in self.charts
        )
        return TEMPLATE.format(
            title=escape(self.title),
            body="\n".join(self.sections),
            specs=specs,
            bundle=vega_bundle().replace("</script", "<\\/script"),
            n_charts=len(self.charts),
        )


def chart_ids(page: Page) -> Sequence[str]:
    return [cid for cid, _ in page.charts]


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }}
h1 {{ font-size: 1.6em; }} h2 {{ border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }}
table {{ border-collapse: collapse; font-size: .85em; margin: .5em 0; }}
th, td {{ border: 1px solid #ddd; padding: 3px 7px; text-align: left; }}
th {{ background: #f4f4f4; cursor: pointer; }} td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.note {{ color: #666; font-size: .85em; }} .chart {{ display: inline-block; margin: .5em; vertical-align: top; }}
.flag {{ color: #a40000; }} code {{ background: #f4f4f4; padding: 1px 4px; }}
</style></head>
<body data-charts="{n_charts}">
{body}
{specs}
<script>{bundle}</script>
<script>
(function () {{
  var rendered = 0;
  document.querySelectorAll('.chart').forEach(function (el) {{
    var spec = JSON.parse(document.getElementById(el.id + '-spec').textContent);
    vegaEmbed('#' + el.id, spec, {{actions: false, renderer: 'svg'}})
      .then(function () {{ rendered += 1; document.body.dataset.rendered = rendered; }})
      .catch(function (err) {{ console.error('chart ' + el.id + ': ' + err); }});
  }});
  document.querySelectorAll('table.sortable th').forEach(function (th, i) {{
    th.addEventListener('click', function () {{
      var table = th.closest('table'), body = table.tBodies[0], col = Array.prototype.indexOf.call(th.parentNode.children, th);
      var asc = th.dataset.asc !== 'true'; th.dataset.asc = asc;
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {{
        var x = a.cells[col], y = b.cells[col];
        var xv = x.dataset.v !== undefined ? parseFloat(x.dataset.v) : x.textContent, yv = y.dataset.v !== undefined ? parseFloat(y.dataset.v) : y.textContent;
        return (xv > yv ? 1 : xv < yv ? -1 : 0) * (asc ? 1 : -1);
      }});
      rows.forEach(function (r) {{ body.appendChild(r); }});
    }});
  }});
}})();
</script>
</body></html>
"""
