"""MLflow layout of the design page: one experiment per sweep, a parent run per invocation, a child run per config.

Everything goes through ``MlflowClient`` with explicit run ids (no fluent active-run state), so workers in other
processes or machines can log child runs of the same parent directly to the store.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag

from collect.store_check import DEFAULT_TRACKING_URI, StoreError, check_store, resolve_tracking_uri, sqlite_path  # noqa: F401 - re-exported

TAG_SWEEP, TAG_HASH, TAG_INTERVENTION, TAG_KIND = "sweep", "config_hash", "intervention", "flatlas.kind"
PARENT_TAG = "mlflow.parentRunId"
BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch call
STORE_LOCK_TIMEOUT_S = 300.0  # a fresh SQLite store migrates in ~5 s; a holder this slow is stuck


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store live beside its database file, in ``<name>_artifacts/`` (``data/mlflow.db`` ->
    ``data/mlflow_artifacts/``), so two stores in one folder never share an artifact folder; a server decides its own."""
    path = sqlite_path(uri)
    if path is not None:
        return (path.parent.resolve() / f"{path.stem}_artifacts").as_uri()
    return None


def ensure_store(uri: str, lock_timeout: float = STORE_LOCK_TIMEOUT_S) -> MlflowClient:
    """Open the store. A SQLite database is first opened (and, when new, created and schema-migrated) under a file
    lock beside it (``<db>.lock``), so concurrent first use by several processes waits instead of racing the
    migration (alembic: "Online migration expected to match one row")."""
    path = sqlite_path(uri)
    if path is None:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
        return client
    path.parent.mkdir(parents=True, exist_ok=True)
    with store_lock(path.with_name(path.name + ".lock"), lock_timeout):
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    return client


@contextlib.contextmanager
def store_lock(lock: Path, timeout: float, poll: float = 0.1) -> Iterator[None]:
    """An exclusive ``flock`` on ``lock`` (released when the file closes, also when the process dies).

    Plain ``fcntl`` rather than the ``filelock`` package: its lock objects sit in reference cycles with a ``__del__``,
    and a Ctrl-C that arrives while the garbage collector runs that ``__del__`` is swallowed. Where ``fcntl`` does not
    exist (Windows) no lock is taken.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    deadline = time.monotonic() + timeout
    with open(lock, "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(f"waited {timeout:.0f} s for the store lock {lock}: another process is creating the "
                                     "store or hangs; if none runs, delete the lock file") from None
                time.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def get_or_create_experiment(client: MlflowClient, name: str, uri: str) -> str:
    """The sweep's experiment; two invocations creating it at once both get the one that won the insert."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        root = artifact_root(uri)
        try:
            return client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)
        except MlflowException:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        raise RuntimeError(f"experiment '{name}' is deleted in {uri}; restore it in mlflow ui or pass --experiment NEW_NAME")
    return exp.experiment_id


@cache
def code_version() -> str:
    """Git commit of the toolkit's checkout (with '+dirty' for local changes), else the package version."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5)
            return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    from collect import __version__

    return __version__


def start_parent(client: MlflowClient, experiment_id: str, sweep: str, tags: Mapping[str, str]) -> str:
    """The invocation's parent run, owned by this process (``worker`` and ``claim.heartbeat`` tags, see
    ``collect.claims``) so that a later invocation can tell a live sweep from a dead one."""
    from collect.claims import owner_tags

    run = client.create_run(
        experiment_id,
        tags={TAG_SWEEP: sweep, TAG_KIND: "sweep", "code_version": code_version(), **owner_tags(), **tags},
        run_name=f"{sweep} {time.strftime('%Y-%m-%d %H:%M:%S')}",
    )
    return run.info.run_id


def _search_all(client: MlflowClient, experiment_id: str, query: str) -> list:
    out, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=query, max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def child_runs(client: MlflowClient, experiment_id: str) -> list:
    """All child (configuration) runs of an experiment, any status."""
    return _search_all(client, experiment_id, f"tags.`{TAG_KIND}` = 'config'")


def finished_hashes(client: MlflowClient, experiment_id: str) -> set[str]:
    """Config hashes that already have a FINISHED child run (resume skips them)."""
    return {r.data.tags.get(TAG_HASH) for r in child_runs(client, experiment_id) if r.info.status == "FINISHED"}


def close_stale_runs(client: MlflowClient, experiment_id: str, reason: str) -> int:
    """Mark child runs still RUNNING but dead (a crashed or killed earlier invocation: process gone or no heartbeat,
    see ``collect.claims.is_alive``) FAILED with ``reason``; live claims of concurrent invocations are left alone."""
    return _close_dead(client, experiment_id, "config", reason)


def close_stale_parents(client: MlflowClient, experiment_id: str, reason: str) -> int:
    """Mark parent runs of the experiment still RUNNING but dead (their driver was killed) FAILED with ``reason``."""
    return _close_dead(client, experiment_id, "sweep", reason)


def _close_dead(client: MlflowClient, experiment_id: str, kind: str, reason: str) -> int:
    from collect.claims import is_alive

    closed = 0
    for r in _search_all(client, experiment_id, f"tags.`{TAG_KIND}` = '{kind}' and attributes.status = 'RUNNING'"):
        if not is_alive(r):
            client.set_tag(r.info.run_id, "failure_reason", reason)
            client.set_terminated(r.info.run_id, "FAILED")
            closed += 1
    return closed


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def start_child(
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str | None,
    config: Mapping[str, Any],
    tags: Mapping[str, str],
    run_name: str,
) -> str:
    """Create a RUNNING child run holding the full resolved config as params (measures as JSON)."""
    all_tags = {TAG_KIND: "config", "code_version": code_version(), **tags}
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run_id = client.create_run(experiment_id, tags=all_tags, run_name=run_name).info.run_id
    flat = flatten({k: v for k, v in config.items() if k != "measures"})
    params = [Param(k, json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)) for k, v in flat.items()]
    params.append(Param("measures", json.dumps(config.get("measures", []))[:6000]))
    client.log_batch(run_id, params=params)
    return run_id


def metric_name(column: str) -> str:
    """MLflow name of a ledger column: the first ``.`` becomes ``/`` (``measure.lambda_max`` -> ``measure/lambda_max``,
    ``diag.hessian_trace_se`` -> ``diag/hessian_trace_se``), so that MLflow's run page groups a run's metrics by
    kind (measure, diag, gen, time, train, curve) instead of listing them side by side.
    ``analyze.ledger.run_row`` maps the names back to the ledger's dotted columns."""
    group, dot, key = column.partition(".")
    return f"{group}/{key}" if dot else column


def log_metrics(client: MlflowClient, run_id: str, values: Mapping[str, float], step: int = 0) -> None:
    """Log ``{ledger column: value}`` as metrics named ``<group>/<key>`` (``metric_name``)."""
    now = int(time.time() * 1000)
    metrics = [Metric(metric_name(k), float(v), now, step) for k, v in values.items() if v is not None]
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + BATCH])


def log_curves(client: MlflowClient, run_id: str, curves: list[Mapping[str, float]]) -> None:
    """Training curves as metrics ``curve/<name>`` with ``step`` = training step."""
    now = int(time.time() * 1000)
    metrics = [
        Metric(metric_name(f"curve.{k}"), float(v), now, int(row["step"]))
        for row in curves
        for k, v in row.items()
        if k != "step" and v is not None and np.isfinite(v)
    ]
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + BATCH])


def log_tags(client: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    if tags:
        client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])


def log_dataset(client: MlflowClient, run_id: str, name: str, features: np.ndarray, targets: np.ndarray, context: str) -> None:
    """Record a dataset input (name, digest, shape) so ``mlflow ui`` shows what each run trained and tested on.

    Tried up to three times: parallel workers starting together race to register the same dataset (MLflow looks it
    up, then inserts it; the slower one hits the unique constraint), and a second try links the row the faster one
    inserted.
    """
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.exceptions import MlflowException

    source = CodeDatasetSource({"flatlas.dataset": name})
    ds = mlflow.data.from_numpy(features.reshape(len(features), -1), targets=targets, name=name, source=source)
    entry = DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])
    for attempt in range(3):
        try:
            return client.log_inputs(run_id, datasets=[entry])
        except MlflowException:
            if attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))


def log_artifact_files(client: MlflowClient, run_id: str, files: Mapping[str, Any]) -> None:
    """Write and log artifacts: ``{relative path: pandas frame | dict (json) | bytes-producing callable}``."""
    with tempfile.TemporaryDirectory() as tmp:
        for rel, content in files.items():
            path = Path(tmp) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, pd.DataFrame):
                content.to_parquet(path, index=False)
            elif isinstance(content, (dict, list)):
                path.write_text(json.dumps(content, indent=2, default=str))
            elif callable(content):
                content(path)
            else:
                path.write_bytes(content)
        client.log_artifacts(run_id, tmp)


def terminate(client: MlflowClient, run_id: str, status: str, reason: str | None = None) -> None:
    if reason:
        client.set_tag(run_id, "failure_reason", reason[:5000])
    client.set_terminated(run_id, status)
