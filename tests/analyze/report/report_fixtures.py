"""Ledgers and frames for the report tests: tests/analyze/synthetic.py's planted ledger plus what a report shows
beyond statistics (intervention tags, timings, a measure spanning decades, λ_max with η, curves, per-sample
margins), and hostile strings in every place a run can put text.

Statistics frames come from ``analyze.stats.report_frames`` itself, so the report is tested on the schemas it receives.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl


def _load_synthetic():
    """tests/analyze/synthetic.py, loaded by path (tests/ is not a package, and pytest may run from anywhere)."""
    path = Path(__file__).resolve().parents[1] / "synthetic.py"
    spec = importlib.util.spec_from_file_location("flatlas_tests_synthetic", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


synthetic_ledger = _load_synthetic().synthetic_ledger

EVIL = "<script>window.__pwned = 1</script>"
EVIL_ATTR = "\"'><img src=x onerror=\"window.__pwned=2\">"


def report_ledger(n_runs: int | None = None, seed: int = 0, evil: bool = True, n_failed: int = 2) -> pl.DataFrame:
    """A planted ledger (120 finished runs by default, or about ``n_runs``) with report-only columns added."""
    if n_runs is None:
        ledger = synthetic_ledger(seed=seed, n_failed=n_failed)
    else:
        axes = {"hp.optimizer": ["sgd", "adam"], "hp.batch_size": [32, 64, 128, 256, 512], "hp.lr": [0.001, 0.003, 0.01, 0.03, 0.1],
                "hp.dropout": [0.0, 0.1, 0.25, 0.5], "hp.weight_decay": [0.0, 1e-4, 5e-4, 1e-3, 5e-3]}
        n_configs = int(np.prod([len(v) for v in axes.values()]))
        ledger = synthetic_ledger(axes=axes, n_seeds=max(1, -(-n_runs // n_configs)), seed=seed, n_failed=n_failed)
        ledger = pl.concat([ledger.filter(pl.col("status") == "FINISHED").head(n_runs - n_failed), ledger.filter(pl.col("status") != "FINISHED")])
    rng = np.random.default_rng(seed)
    n = ledger.height
    gap = ledger["gen.gap_acc"].to_numpy()
    lr = ledger["hp.lr"].cast(pl.Float64).to_numpy()
    opt = ledger["hp.optimizer"].cast(pl.Utf8).to_list()
    label = [f"optimizer={o}, batch_size={b}" for o, b in zip(opt, ledger["hp.batch_size"].to_list())]
    if evil:
        label = [EVIL if i % 7 == 0 else EVIL_ATTR if i % 7 == 1 else s for i, s in enumerate(label)]
    extra = {
        "tag.intervention": label,
        "tag.sweep": [EVIL if evil else "synthetic"] * n,
        "measure.hessian_trace": np.exp(rng.normal(3 + 40 * gap, 1.2)),  # spans several decades → log axis
        "measure.lambda_max": (2.0 / lr) * rng.uniform(0.3, 1.1, n),
        "measure.hessian_trace_se": rng.uniform(0.1, 1.0, n),  # a diagnostic: ranked, not drawn as a panel
        "measure.margin_mean": 5.0 - 20 * gap + rng.normal(0, 0.3, n),
        "measure.margin_skew": rng.normal(0.5, 0.3, n),
        "measure.sharpness": 50.0 - 300 * gap + rng.normal(0, 3.0, n),  # registered +1 vs the gap: a reversal
        "gen.test_err": 1.0 - ledger["gen.test_acc"].to_numpy(),
        "time.hessian_trace": rng.lognormal(3.0, 0.2, n),
        "time.margins": rng.lognormal(-2.0, 0.2, n),
    }
    out = ledger.with_columns([pl.Series(k, v) for k, v in extra.items()])
    if evil:
        out = out.with_columns(pl.when(pl.col("hp.optimizer") == "adam").then(pl.lit("adam" + EVIL)).otherwise(pl.col("hp.optimizer")).alias("hp.optimizer"))
        out = out.with_columns(pl.lit("FAILED: " + EVIL).alias("tag.failure_reason"))
    return out


def stats_frames(ledger: pl.DataFrame, resamples: int = 200, per_sample: dict[str, pl.DataFrame] | None = None) -> dict[str, pl.DataFrame]:
    """Every statistics frame, from analyze.stats.report_frames itself (the report is tested on what it will receive)."""
    from analyze.stats.suite import report_frames

    frames, _notes = report_frames(ledger, target="gen.gap_acc", covariates=["measure.margin_mean"], resamples=resamples, per_sample=per_sample)
    return frames


def per_sample_frames(ledger: pl.DataFrame, n_samples: int = 300, seed: int = 0) -> dict[str, pl.DataFrame]:
    """Per-sample trace, ACEHT, margin bound and output margins of two smallest- and two largest-batch runs, by run id
    (as analyze.ledger.load_per_sample returns them)."""
    rng = np.random.default_rng(seed)
    done = ledger.filter(pl.col("status") == "FINISHED")
    sizes = sorted(done["hp.batch_size"].unique().to_list())
    ids = done.filter(pl.col("hp.batch_size") == sizes[0])["run_id"].to_list()[:2] + done.filter(pl.col("hp.batch_size") == sizes[-1])["run_id"].to_list()[:2]
    out = {}
    for k, run_id in enumerate(ids):
        aceht = rng.exponential(0.2, n_samples)
        margin = rng.gamma(2.0 + 2 * k, 1.5, n_samples) - 0.5
        out[run_id] = pl.DataFrame(
            {"trace": aceht * rng.lognormal(0, 0.2, n_samples), "aceht": aceht, "margin_bound": aceht * 1.3,
             "output_margin": margin, "correct": margin > 0}
        )
    return out


def curves_frame(ledger: pl.DataFrame, steps: int = 20, seed: int = 0) -> pl.DataFrame:
    """Training curves (run_id, metric, step, value) of the finished runs, as analyze.ledger.curves returns them."""
    rng = np.random.default_rng(seed)
    ids = ledger.filter(pl.col("status") == "FINISHED")["run_id"].to_list()
    rows = []
    for run_id in ids:
        rate = rng.uniform(0.1, 0.4)
        for s in range(steps):
            step = s * 50
            rows += [
                {"run_id": run_id, "metric": "train_loss", "step": step, "value": float(2.3 * np.exp(-rate * s))},
                {"run_id": run_id, "metric": "test_acc", "step": step, "value": float(0.9 - 0.8 * np.exp(-rate * s))},
                {"run_id": run_id, "metric": "per_sample_r_aceht", "step": step, "value": float(0.5 + 0.4 * (1 - np.exp(-rate * s)))},
            ]
    return pl.DataFrame(rows, schema={"run_id": pl.Utf8, "metric": pl.Utf8, "step": pl.Int64, "value": pl.Float64})


def full_frames(ledger: pl.DataFrame, resamples: int = 200) -> dict[str, pl.DataFrame]:
    """Statistics frames plus the data frame the CLI fetches from MLflow (training curves)."""
    frames = stats_frames(ledger, resamples=resamples, per_sample=per_sample_frames(ledger))
    frames["curves"] = curves_frame(ledger)
    return frames


def many_environments(ledger: pl.DataFrame, n: int, seed: int = 0) -> pl.DataFrame:
    """``n`` made-up per-environment sign-errors in the shape of analyze.stats' sign_error_envs (size test only)."""
    rng = np.random.default_rng(seed)
    measures = [c for c in ledger.columns if c.startswith("measure.")]
    axes = ["hp.lr", "hp.batch_size", "hp.dropout"]
    return pl.DataFrame(
        {"measure": rng.choice(measures, n), "target": ["gen.gap_acc"] * n, "axis": rng.choice(axes, n),
         "error": rng.beta(2, 3, n), "ess": rng.uniform(12, 40, n)}
    )


def sign_error_summary(ledger: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """Made-up mean/p90/max sign-errors per measure × axis in the shape of analyze.stats.sign_error (size test only)."""
    rng = np.random.default_rng(seed)
    rows = []
    for m in [c for c in ledger.columns if c.startswith("measure.")]:
        for axis in ("hp.lr", "hp.batch_size", "hp.dropout", "ALL"):
            mean = float(rng.uniform(0.2, 0.5))
            rows.append({"measure": m, "target": "gen.gap_acc", "axis": axis, "mean": mean, "p90": mean + 0.2, "max": mean + 0.3})
    return pl.DataFrame(rows)


def meta_for(ledger: pl.DataFrame, **extra: Any) -> dict[str, Any]:
    return {
        "command": "python -m analyze report --ledger synthetic.csv " + EVIL,
        "experiment": "synthetic" + EVIL,
        "tracking_uri": None,
        "ledger_path": None,
        "target": "gen.gap_acc",
        "targets": ["gen.test_acc", "gen.test_loss", "gen.gap_acc", "gen.gap_loss"],
        "notes": ["a note from the statistics " + EVIL],
        "resamples": 200,
        "confidence": 0.95,
        "alpha": 0.05,
        "seed": 0,
        **extra,
    }


SPEC_RE = re.compile(r"<script type='application/json' id='(chart\d+)-spec' data-renderer='(\w+)'>(.*?)</script>", re.S)
LABEL_RE = re.compile(r"<div class='chart' id='(chart\d+)' role='img' aria-label='([^']*)'>")


def chart_specs(html: str) -> dict[str, dict[str, Any]]:
    """Chart id → Vega-Lite spec, read back from the page."""
    return {cid: json.loads(text) for cid, _, text in SPEC_RE.findall(html)}


def specs_by_label(html: str) -> dict[str, dict[str, Any]]:
    """Chart label (aria-label) → Vega-Lite spec."""
    specs = chart_specs(html)
    return {label: specs[cid] for cid, label in LABEL_RE.findall(html)}
