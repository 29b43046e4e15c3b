"""MLflow layout of the design page: one experiment per sweep, a parent run per invocation, a child run per config.

Everything goes through ``MlflowClient`` with explicit run ids (no fluent active-run state), so workers in other
processes or machines can log child runs of the same parent directly to the store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag

from collect.names import safe_component
from collect.store_check import DEFAULT_TRACKING_URI, StoreError, check_store, resolve_tracking_uri, sqlite_path  # noqa: F401 - re-exported
from collect.store_template import create_from_template
from collect.tags import EXPERIMENT_KIND_TAG, MODEL_TRAINING, PARENT_TAG, TAG_HASH, TAG_INTERVENTION, TAG_KIND, TAG_SWEEP  # noqa: F401 - re-exported

# MLflow's limits of one log_batch call (mlflow.utils.validation): metrics, params, tags, and all of them together
MAX_METRICS, MAX_PARAMS_TAGS, MAX_ENTITIES = 1000, 100, 1000
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
    migration (alembic: "Online migration expected to match one row"). A new SQLite store starts as a copy of an
    empty migrated one (``collect.store_template``), so its migration is paid once per machine and MLflow version."""
    # MLflow logs every SQLAlchemy error with its traceback (tens of lines) before raising it; the exception carries
    # the same message, which the run's failure reason or the command's one line reports.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    path = sqlite_path(uri)
    if path is None:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
        return client
    path.parent.mkdir(parents=True, exist_ok=True)
    with store_lock(path.with_name(path.name + ".lock"), lock_timeout):
        if not path.exists():
            create_from_template(path)
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
    """The sweep's experiment; two invocations creating it at once both get the one that won the insert.

    The experiment keeps ``name``; its artifact folder (SQLite stores) is ``<artifact root>/safe_component(name)``,
    so no name can place artifacts outside the store's artifact folder. It is marked a model-training experiment
    (``EXPERIMENT_KIND_TAG``), so that the MLflow UI opens it on its runs table; an experiment whose kind was set
    otherwise (by hand in the UI) keeps it."""
    from mlflow.exceptions import MlflowException

    kind = {EXPERIMENT_KIND_TAG: MODEL_TRAINING}
    exp = client.get_experiment_by_name(name)
    if exp is None:
        root = artifact_root(uri)
        try:
            return client.create_experiment(name, artifact_location=f"{root}/{safe_component(name)}" if root else None,
                                            tags=kind)
        except MlflowException:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        raise RuntimeError(f"experiment '{name}' is deleted in {uri}; restore it in mlflow ui or pass --experiment NEW_NAME")
    if EXPERIMENT_KIND_TAG not in exp.tags:
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
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


def metric_entities(values: Mapping[str, float], step: int = 0) -> list[Metric]:
    """``{ledger column: value}`` as MLflow metrics named ``<group>/<key>`` (``metric_name``); None is left out."""
    now = int(time.time() * 1000)
    return [Metric(metric_name(k), float(v), now, step) for k, v in values.items() if v is not None]


def curve_entities(curves: Sequence[Mapping[str, float]]) -> list[Metric]:
    """Training curves as metrics ``curve/<name>`` with ``step`` = training step (non-finite points left out)."""
    now = int(time.time() * 1000)
    return [
        Metric(metric_name(f"curve.{k}"), float(v), now, int(row["step"]))
        for row in curves
        for k, v in row.items()
        if k != "step" and v is not None and np.isfinite(v)
    ]


def tag_entities(tags: Mapping[str, Any]) -> list[RunTag]:
    return [RunTag(k, str(v)[:5000]) for k, v in tags.items()]


def batches(metrics: Sequence[Metric] = (), params: Sequence[Param] = (), tags: Sequence[RunTag] = ()) -> list[tuple[list, list, list]]:
    """(metrics, params, tags) packed into the fewest ``log_batch`` calls MLflow accepts: each holds at most
    ``MAX_METRICS`` metrics, ``MAX_PARAMS_TAGS`` params and as many tags, ``MAX_ENTITIES`` in all; the params and
    tags go first, the metrics fill the rest."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    out = []
    while metrics or params or tags or not out:
        p, params = params[:MAX_PARAMS_TAGS], params[MAX_PARAMS_TAGS:]
        g, tags = tags[:MAX_PARAMS_TAGS], tags[MAX_PARAMS_TAGS:]
        room = min(MAX_METRICS, MAX_ENTITIES - len(p) - len(g))
        m, metrics = metrics[:room], metrics[room:]
        out.append((m, p, g))
    return out


def log_run(client: MlflowClient, run_id: str, *, metrics: Mapping[str, float] | None = None,
            curves: Sequence[Mapping[str, float]] = (), tags: Mapping[str, Any] | None = None,
            params: Sequence[Param] = ()) -> int:
    """A run's results (final metrics, curves, params, tags) in one ``log_batch`` call when MLflow's limits allow
    (``batches``: 1000 metrics, 100 params, 100 tags), more only for longer curves; returns the number of calls.

    One write instead of one per kind: a SQLite store commits one transaction, a tracking server answers one request."""
    entities = metric_entities(metrics or {}) + curve_entities(curves)
    calls = batches(entities, params, tag_entities(tags or {}))
    for m, p, g in calls:
        if m or p or g:
            client.log_batch(run_id, metrics=m, params=p, tags=g)
    return len(calls)


def log_metrics(client: MlflowClient, run_id: str, values: Mapping[str, float], step: int = 0) -> None:
    """Log ``{ledger column: value}`` as metrics named ``<group>/<key>`` (``metric_name``)."""
    for m, _, _ in batches(metric_entities(values, step)):
        if m:
            client.log_batch(run_id, metrics=m)


def log_curves(client: MlflowClient, run_id: str, curves: list[Mapping[str, float]]) -> None:
    """Training curves as metrics ``curve/<name>`` with ``step`` = training step."""
    for m, _, _ in batches(curve_entities(curves)):
        if m:
            client.log_batch(run_id, metrics=m)


def log_tags(client: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    for _, _, g in batches(tags=tag_entities(tags)):
        if g:
            client.log_batch(run_id, tags=g)


def log_dataset(client: MlflowClient, run_id: str, name: str, features: np.ndarray, targets: np.ndarray, context: str) -> None:
    """``log_datasets`` of one dataset."""
    log_datasets(client, run_id, [(name, features, targets, context)])


def log_datasets(client: MlflowClient, run_id: str, datasets: Sequence[tuple[str, np.ndarray, np.ndarray, str]]) -> None:
    """Record dataset inputs ``(name, features, targets, context)`` (name, digest, shape) in one ``log_inputs`` call,
    so ``mlflow ui`` shows what each run trained and tested on.

    Tried up to three times: parallel workers starting together race to register the same dataset (MLflow looks it
    up, then inserts it; the slower one hits the unique constraint), and a second try links the row the faster one
    inserted.
    """
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.exceptions import MlflowException

    entries = []
    for name, features, targets, context in datasets:
        source = CodeDatasetSource({"flatlas.dataset": name})
        ds = mlflow.data.from_numpy(features.reshape(len(features), -1), targets=targets, name=name, source=source)
        entries.append(DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)]))
    for attempt in range(3):
        try:
            return client.log_inputs(run_id, datasets=entries)
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


def terminate_if_running(client: MlflowClient, run_id: str, status: str, reason: str | None = None) -> str | None:
    """``terminate`` while the run is RUNNING; None then. A status already written is final: a parent run another
    invocation closed (its driver looked dead) keeps that status, with the tag ``status.kept`` saying what this
    invocation would have written; returns the kept status."""
    current = client.get_run(run_id).info.status
    if current == "RUNNING":
        terminate(client, run_id, status, reason)
        return None
    client.set_tag(run_id, "status.kept", f"{current}: closed by another invocation; this one ended later ({status})")
    return current


def terminate(client: MlflowClient, run_id: str, status: str, reason: str | None = None) -> None:
    if reason:
        client.set_tag(run_id, "failure_reason", reason[:5000])
    client.set_terminated(run_id, status)
