"""The HTML report: renders the frames the statistics produced (it computes no statistic itself).

``write_report(ledger, frames, meta, out)`` writes one self-contained file (see ``page``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import altair as alt
import polars as pl

from analyze.columns import measure_columns
from analyze.ledger import finished, ledger_hash, status_counts
from analyze.report.page import Page, escape, table

MAX_POINTS = 5000  # scatters above this many runs are sampled (and say so)


def scatter(ledger: pl.DataFrame, measure: str, target: str, seed: int = 0) -> tuple[dict, str]:
    """Altair scatter of one measure against the target, coloured by intervention; returns (spec, note)."""
    color = "tag.intervention" if "tag.intervention" in ledger.columns else None
    cols = ["run_id", measure, target] + ([color] if color else [])
    data = ledger.select(cols).drop_nulls([measure, target])
    note = ""
    if len(data) > MAX_POINTS:
        note = f"{MAX_POINTS} of {len(data)} runs shown (random sample, seed {seed})."
        data = data.sample(MAX_POINTS, seed=seed)
    renamed = data.rename({measure: "measure", target: "target"} | ({color: "intervention"} if color else {}))
    chart = (
        alt.Chart(alt.Data(values=renamed.to_dicts()))
        .mark_circle(size=45, opacity=0.75)
        .encode(
            x=alt.X("measure:Q", title=measure, scale=alt.Scale(zero=False)),
            y=alt.Y("target:Q", title=target, scale=alt.Scale(zero=False)),
            tooltip=["run_id:N", "measure:Q", "target:Q"] + (["intervention:N"] if color else []),
            **({"color": alt.Color("intervention:N", legend=alt.Legend(title="intervention", orient="bottom", columns=2, labelLimit=260))} if color else {}),
        )
        .properties(width=300, height=230, title=f"{measure.removeprefix('measure.')}")
    )
    return chart.to_dict(), note


def header(ledger: pl.DataFrame, meta: Mapping[str, Any]) -> str:
    counts = status_counts(ledger)
    hp_varied = [
        c for c in ledger.columns if c.startswith("hp.") and ledger[c].drop_nulls().cast(pl.Utf8).n_unique() > 1
    ]
    interventions = ", ".join(
        f"{escape(c.removeprefix('hp.'))} ∈ {{{escape(', '.join(sorted(map(str, ledger[c].drop_nulls().cast(pl.Utf8).unique().to_list()))))}}}"
        for c in hp_varied
    )
    from analyze import __version__

    return (
        f"<h1>flatlas report: {escape(meta.get('experiment', ''))}</h1>"
        f"<p>{len(ledger)} runs: " + ", ".join(f"{n} {escape(s.lower())}" for s, n in sorted(counts.items())) + ". "
        f"Statistics use the finished runs only.</p>"
        f"<p>Interventions: {interventions or 'none varied'}.</p>"
        f"<p>Target: <code>{escape(meta.get('target', ''))}</code>. Command: <code>{escape(meta.get('command', ''))}</code>. "
        f"Ledger hash {escape(ledger_hash(ledger))}; flatlas {escape(__version__)}; store {escape(meta.get('tracking_uri') or meta.get('ledger_path') or '')}.</p>"
    )


def render(ledger: pl.DataFrame, frames: Mapping[str, pl.DataFrame], meta: Mapping[str, Any]) -> str:
    target = str(meta.get("target", "gen.gap_acc"))
    page = Page(title=f"flatlas: {meta.get('experiment', '')}")
    page.sections.append(header(ledger, meta))
    for name, frame in frames.items():
        page.sections.append(f"<h2>{escape(name.replace('_', ' ').capitalize())}</h2>" + table(frame))
    done = finished(ledger)
    if target in done.columns:
        page.sections.append(f"<h2>Measures against {escape(target)}</h2>")
        for m in measure_columns(done.columns):
            if done[m].drop_nulls().len() == 0:
                continue
            spec, note = scatter(done, m, target)
            page.sections.append(page.add_chart(spec) + (f"<p class='note'>{escape(note)}</p>" if note else ""))
    runs = ledger.select([c for c in ("run_id", "status", "tag.intervention", "seed", target, "tag.failure_reason") if c in ledger.columns])
    page.sections.append("<h2>Runs</h2>" + table(runs))
    return page.render()


def write_report(ledger: pl.DataFrame, frames: Mapping[str, pl.DataFrame], meta: Mapping[str, Any], out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(ledger, frames, meta), encoding="utf-8")
    return out
