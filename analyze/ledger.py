"""Load runs into the ledger: one polars row per trained model, columns prefixed as in ``analyze.columns``.

Sources: an MLflow store (the child runs of an experiment) or a CSV/Parquet ledger file with the same columns
(for example exported from another study). Either way the statistics see the same frame.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import polars as pl

from analyze.columns import DIAG, GEN, HP, ID_COLUMNS, MEASURE, TAG, TIME

# Params that are bookkeeping, not hyperparameters.
NON_HP_PARAMS = {"measures", "curve_measures", "save_weights", "seed"}
METRIC_PREFIXES = (MEASURE, DIAG, GEN, TIME, "train.")
CURVE_PREFIXES = ("curve/", "curve.")  # training-curve metrics, and their name in stores written before the / groups
FLATLAS_KIND = "flatlas.kind"


class LedgerError(ValueError):
    """The runs could not be loaded into a ledger; the message says what is missing and how to fix it."""


def parse_param(value: str) -> Any:
    """MLflow params are strings: turn 'True', 'None', '3', '0.1' back into Python values; keep other text."""
    if value in ("True", "False"):
        return value == "True"
    if value == "None":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def metric_column(name: str) -> str:
    """Ledger column of an MLflow metric name: ``measure/lambda_max`` -> ``measure.lambda_max`` (the first ``/``
    becomes ``.``; collect logs ``<group>/<key>`` so MLflow's run page groups metrics). A store written before
    diagnostics were told apart holds them as ``measure.<key>``: when the measure registry declares ``<key>`` a
    diagnostic (``output_kind``), the column is ``diag.<key>``. Names already dotted keep their form."""
    group, slash, key = name.partition("/")
    if slash and "." not in group:
        name = f"{group}.{key}"
    if name.startswith(MEASURE) and _output_kind(name.removeprefix(MEASURE)) == "diagnostic":
        return DIAG + name.removeprefix(MEASURE)
    return name


@functools.cache
def _output_kind(key: str) -> str:
    """``collect.measures.registry.output_kind``; 'unknown' where collect's measures cannot be imported."""
    try:
        from collect.measures.registry import output_kind
    except Exception:  # torch missing or a broken measure module: keep the stored names
        return "unknown"
    return output_kind(key)


def run_row(run: Any, experiment: str) -> dict[str, Any]:
    """One ledger row from an MLflow run: params → hp.<leaf>, metrics → their ledger columns (``metric_column``),
    user tags → tag.<name>."""
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    row: dict[str, Any] = {
        "run_id": run.info.run_id,
        "experiment": experiment,
        "seed": parse_param(params["seed"]) if "seed" in params else None,
        "status": run.info.status,
    }
    for key, value in params.items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf not in NON_HP_PARAMS:
            row[f"{HP}{leaf}"] = parse_param(value)
    for key, value in metrics.items():
        column = metric_column(key)
        if column.startswith(METRIC_PREFIXES):
            row[column] = value
    for key, value in tags.items():
        if not key.startswith("mlflow."):
            row[f"{TAG}{key}"] = value
    return row


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    data = {c: [row.get(c) for row in rows] for c in columns}
    series = []
    for name, values in data.items():
        try:
            series.append(pl.Series(name, values, strict=False))
        except (TypeError, pl.exceptions.PolarsError):
            series.append(pl.Series(name, [None if v is None else str(v) for v in values]))
    front = [c for c in ID_COLUMNS if c in columns]
    ordered = front + sorted(c for c in columns if c not in front)
    return pl.DataFrame(series).select(ordered)


def load_from_mlflow(tracking_uri: str | None = None, experiment: str | None = None) -> pl.DataFrame:
    """All configuration runs (any status) of ``experiment`` (default: the most recently created one)."""
    from mlflow import MlflowClient

    from collect.tracking import resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(tracking_uri)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise LedgerError(f"no MLflow store at {db}; run `python -m collect` first or pass --tracking-uri / --ledger")
    client = MlflowClient(tracking_uri=uri)
    exp = _find_experiment(client, experiment, uri)
    runs, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    configs = [r for r in runs if r.data.tags.get(FLATLAS_KIND) == "config"]
    if not configs:  # an experiment logged by another tool: every run that is not a parent
        parents = {r.data.tags.get("mlflow.parentRunId") for r in runs}
        configs = [r for r in runs if r.info.run_id not in parents]
    if not configs:
        raise LedgerError(f"experiment '{exp.name}' in {uri} has no runs yet; run `python -m collect --experiment {exp.name}`")
    return _frame([run_row(r, exp.name) for r in configs])


def _find_experiment(client: Any, name: str | None, uri: str) -> Any:
    if name is not None:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            known = ", ".join(e.name for e in client.search_experiments()) or "none"
            raise LedgerError(f"no experiment named '{name}' in {uri}; experiments there: {known}")
        return exp
    candidates = [e for e in client.search_experiments(order_by=["creation_time DESC"]) if e.name != "Default"]
    if not candidates:
        raise LedgerError(f"no experiments in {uri}; run `python -m collect` first or pass --ledger FILE")
    return candidates[0]


def load_file(path: Path) -> pl.DataFrame:
    """A CSV or Parquet ledger; it needs at least one ``measure.*`` and one ``gen.*`` column."""
    path = Path(path)
    if not path.exists():
        raise LedgerError(f"ledger file {path} does not exist")
    if path.suffix.lower() in (".parquet", ".pq"):
        frame = pl.read_parquet(path)
    elif path.suffix.lower() in (".csv", ".tsv"):
        frame = pl.read_csv(path, separator="\t" if path.suffix.lower() == ".tsv" else ",", infer_schema_length=10000)
    else:
        raise LedgerError(f"ledger file {path}: use a .csv, .tsv or .parquet file")
    return validate(frame, str(path))


def validate(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    missing = [p for p in (MEASURE, GEN) if not any(c.startswith(p) for c in frame.columns)]
    if missing:
        raise LedgerError(
            f"{source}: no column starting with {' or '.join(repr(m) for m in missing)}; a ledger has one row per run "
            f"with columns like measure.hessian_trace and gen.test_acc (see README, 'Ledger columns')"
        )
    if "status" not in frame.columns:
        frame = frame.with_columns(pl.lit("FINISHED").alias("status"))
    if "run_id" not in frame.columns:
        frame = frame.with_row_index("run_id").with_columns(pl.col("run_id").cast(pl.Utf8))
    if "experiment" not in frame.columns:
        frame = frame.with_columns(pl.lit(Path(source).stem).alias("experiment"))
    return frame


def load_ledger(*, tracking_uri: str | None = None, experiment: str | None = None, ledger_path: Path | None = None) -> pl.DataFrame:
    """The ledger from a file (``ledger_path``) or from MLflow; raises ``LedgerError`` with a fix on bad input."""
    if ledger_path is not None:
        return load_file(Path(ledger_path))
    return validate(load_from_mlflow(tracking_uri, experiment), f"experiment {experiment or '(most recent)'}")


def finished(ledger: pl.DataFrame) -> pl.DataFrame:
    """Only FINISHED runs enter statistics; failed and killed runs are counted, never mixed in."""
    return ledger.filter(pl.col("status") == "FINISHED")


def status_counts(ledger: pl.DataFrame) -> dict[str, int]:
    return {row["status"]: row["len"] for row in ledger.group_by("status").len().iter_rows(named=True)}


def load_per_sample(
    ledger: pl.DataFrame, measure: str = "per_sample_trace", tracking_uri: str | None = None, run_ids: Iterable[str] | None = None
) -> dict[str, pl.DataFrame]:
    """Per-sample artifacts ``per_sample/<measure>.parquet`` of the ledger's runs, by run id (runs without one are left out)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from collect.tracking import resolve_tracking_uri

    client = MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))
    out: dict[str, pl.DataFrame] = {}
    wanted = list(run_ids) if run_ids is not None else ledger["run_id"].to_list()
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in wanted:
            try:
                path = client.download_artifacts(run_id, f"per_sample/{measure}.parquet", tmp)
            except (MlflowException, OSError):
                continue
            out[run_id] = pl.read_parquet(path)
    return out


def ledger_hash(ledger: pl.DataFrame) -> str:
    """A short content hash of the ledger (rows sorted by run id), printed in reports for provenance."""
    import hashlib

    frame = ledger.sort("run_id") if "run_id" in ledger.columns else ledger
    return hashlib.sha256(frame.write_csv().encode()).hexdigest()[:12]


def curves(run_ids: Iterable[str], tracking_uri: str | None = None, keys: Iterable[str] | None = None) -> pl.DataFrame:
    """Training curves (metrics ``curve/<key>``, or ``curve.<key>`` in older stores, with their steps) of the given
    runs as a long frame; ``keys`` are curve keys (``train_loss``) or metric names."""
    from mlflow import MlflowClient

    from collect.tracking import resolve_tracking_uri

    client = MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))
    rows: list[Mapping[str, Any]] = []
    for run_id in run_ids:
        stored = [k for k in client.get_run(run_id).data.metrics if k.startswith(CURVE_PREFIXES)]
        wanted = None if keys is None else {_curve_key(k) for k in keys}
        for name in stored:
            key = _curve_key(name)
            if wanted is not None and key not in wanted:
                continue
            for m in client.get_metric_history(run_id, name):
                rows.append({"run_id": run_id, "metric": key, "step": m.step, "value": m.value})
    return pl.DataFrame(rows, schema={"run_id": pl.Utf8, "metric": pl.Utf8, "step": pl.Int64, "value": pl.Float64})


def _curve_key(name: str) -> str:
    """``curve/train_loss`` (or the older ``curve.train_loss``, or plain ``train_loss``) -> ``train_loss``."""
    for prefix in CURVE_PREFIXES:
        if name.startswith(prefix):
            return name.removeprefix(prefix)
    return name
