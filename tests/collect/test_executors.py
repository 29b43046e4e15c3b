"""Parallel sweeps: retries and failure records (in-process), a local process pool writing to one SQLite store, and
a Dask LocalCluster logging to a real MLflow tracking server, including a worker killed mid-run."""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import _thread
import urllib.request
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from mlflow import MlflowClient

from collect import executors, tracking
from collect.executors import DaskExecutor, ExecutorError, drive, local_executor, open_executor, run_attempt
from collect.runner import RunOutcome, SweepTarget, run_one, run_sweep
from collect.sweep import expand, parse_spec

SPEC = {
    "name": "par",
    "seeds": [0],
    "measures": ["margins", "norms"],
    "base": {
        "data": {"dataset": "digits", "n_train": 60, "n_test": 40},
        "model": {"arch": "fcn", "width": 8, "depth": 1},
        "optim": {"lr": 0.1, "batch_size": 20},
        "stop": {"max_epochs": 2},
    },
    # dropout draws from torch's global RNG: identical metrics across executors need run_one to seed it per run
    "grid": {"optim.batch_size": [10, 60], "model.dropout": [0.0, 0.3]},
}
# Timings differ from run to run; every other metric must be identical wherever the run trained.
TIMING = ("time/", "train/seconds")


def runs_of(spec: dict = SPEC):
    return expand(parse_spec(spec, "par.toml"))


def children(uri: str, experiment: str) -> list:
    client = MlflowClient(tracking_uri=uri)
    return tracking.child_runs(client, client.get_experiment_by_name(experiment).experiment_id)


def finished_once(kids, runs) -> bool:
    """Every configuration has exactly one FINISHED child run, and no other configuration has one."""
    finished = collections.Counter(k.data.tags["config_hash"] for k in kids if k.info.status == "FINISHED")
    return set(finished) == {r.config_hash for r in runs} and set(finished.values()) == {1}


def result_metrics(kids) -> dict[str, dict[str, float]]:
    return {
        k.data.tags["config_hash"]: {n: v for n, v in k.data.metrics.items() if not n.startswith(TIMING)}
        for k in kids
        if k.info.status == "FINISHED"
    }


def sweep_target(uri: str, experiment: str = "par") -> SweepTarget:
    client = tracking.ensure_store(uri)
    exp_id = tracking.get_or_create_experiment(client, experiment, uri)
    parent = tracking.start_parent(client, exp_id, experiment, {})
    return SweepTarget(uri, exp_id, parent, experiment, "cpu", False, 1)


def fresh_store(template: Path, folder: Path) -> str:
    folder.mkdir(parents=True)
    shutil.copy(template, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


# ------------------------------------------------------------------ in-process: attempts, retries, failure records


def test_attempt_closes_the_run_a_dead_worker_left_running_then_trains_afresh(mlflow_uri):
    run = runs_of()[0]
    target = sweep_target(mlflow_uri)
    client = MlflowClient(tracking_uri=mlflow_uri)
    dead = tracking.start_child(client, target.experiment_id, target.parent_run_id, run.config.to_dict(),
                                {tracking.TAG_HASH: run.config_hash}, "dead")
    outcome = run_attempt(run, target, retries=2)
    assert outcome.status == "FINISHED" and outcome.run_id != dead
    stale = client.get_run(dead)
    assert stale.info.status == "FAILED" and stale.data.tags["failure_reason"] == executors.WORKER_DIED
    assert stale.data.tags[executors.TAG_FAILURE_KIND] == "worker_died"
    assert finished_once(children(mlflow_uri, "par"), [run])


def test_attempt_gives_up_without_training_once_worker_deaths_exceed_retries(mlflow_uri):
    run = runs_of()[0]
    target = sweep_target(mlflow_uri)
    client = MlflowClient(tracking_uri=mlflow_uri)
    for _ in range(2):  # two earlier attempts whose workers died
        tracking.start_child(client, target.experiment_id, target.parent_run_id, run.config.to_dict(), {tracking.TAG_HASH: run.config_hash}, "dead")
    outcome = run_attempt(run, target, retries=1)
    assert outcome.status == "FAILED" and outcome.reason.startswith("worker died 2 times")
    kids = children(mlflow_uri, "par")
    assert len(kids) == 2 and {k.info.status for k in kids} == {"FAILED"}  # no third run was started


def test_driver_retries_raising_attempts_and_records_the_one_that_never_succeeds(mlflow_uri, monkeypatch):
    flaky, broken = runs_of()[:2]
    calls = collections.Counter()

    def fake_run_one(planned, target):
        calls[planned.config_hash] += 1
        if planned.config_hash == broken.config_hash:
            raise RuntimeError("boom before any run was created")
        if calls[planned.config_hash] == 1:  # crashes mid-run on a store error, leaving its child run RUNNING
            client = tracking.ensure_store(target.tracking_uri)
            tracking.start_child(client, target.experiment_id, target.parent_run_id, planned.config.to_dict(),
                                 {tracking.TAG_HASH: planned.config_hash}, "crashing")
            raise ConnectionError("API request to http://store failed")
        return run_one(planned, target)

    monkeypatch.setattr(executors, "run_one", fake_run_one)
    summary = run_sweep([flaky, broken], sweep="par", tracking_uri=mlflow_uri, device="cpu", progress=False,
                        executor=local_executor(1, retries=1))
    assert calls == {flaky.config_hash: 2, broken.config_hash: 2}  # one retry each, no more
    assert summary.finished == 1 and summary.failed == 1
    failed = next(o for o in summary.outcomes if o.status == "FAILED")
    assert failed.config_hash == broken.config_hash and "failed 2 attempt(s)" in failed.reason and "boom" in failed.reason

    kids = children(mlflow_uri, "par")
    by_hash = collections.defaultdict(list)
    for k in kids:
        by_hash[k.data.tags["config_hash"]].append(k)
    flaky_runs = sorted(by_hash[flaky.config_hash], key=lambda k: k.info.status)
    assert [k.info.status for k in flaky_runs] == ["FAILED", "FINISHED"]  # the retry is a fresh child run
    assert "API request" in flaky_runs[0].data.tags["failure_reason"]
    (record,) = by_hash[broken.config_hash]  # recorded once, with the reason, although no attempt created a run
    assert record.info.status == "FAILED" and "boom" in record.data.tags["failure_reason"]
    assert record.data.tags["mlflow.parentRunId"] == summary.parent_run_id


def test_a_locked_store_is_retried_but_a_diverged_run_is_a_result(mlflow_uri, monkeypatch):
    spec = {**SPEC, "grid": {}, "zip": [{"optim.lr": [0.1, 1e12], "optim.batch_size": [20, 20]}]}
    good, diverging = runs_of(spec)
    calls = collections.Counter()

    def fake_run_one(planned, target):
        calls[planned.config_hash] += 1
        if planned.config_hash == good.config_hash and calls[planned.config_hash] == 1:
            return RunOutcome(planned.config_hash, None, "FAILED", "OperationalError: (sqlite3.OperationalError) database is locked")
        return run_one(planned, target)

    monkeypatch.setattr(executors, "run_one", fake_run_one)
    summary = run_sweep([good, diverging], sweep="par", tracking_uri=mlflow_uri, device="cpu", progress=False,
                        executor=local_executor(1, retries=2))
    assert calls == {good.config_hash: 2, diverging.config_hash: 1}
    assert {o.config_hash: o.status for o in summary.outcomes} == {good.config_hash: "FINISHED", diverging.config_hash: "FAILED"}


def test_broken_pool_counts_as_a_worker_death_and_is_retried(mlflow_uri):
    runs = runs_of()[:1]

    class OnceBrokenPool:
        max_in_flight, submitted = 1, 0

        def submit(self, planned, target, retries, attempt):
            self.submitted += 1
            future = Future()
            if self.submitted == 1:
                future.set_exception(BrokenProcessPool("A process in the process pool was terminated abruptly"))
            else:
                future.set_result(run_attempt(planned, target, retries))
            return future

        def abort(self, futures):
            return False

        def close(self):
            pass

    pool = OnceBrokenPool()
    outcomes = list(drive(runs, sweep_target(mlflow_uri), pool, retries=1))
    assert pool.submitted == 2 and [o.status for o in outcomes] == ["FINISHED"]


def test_ctrl_c_cancels_pending_runs_and_marks_runs_in_flight_killed(mlflow_uri):
    runs = runs_of()

    class HangingPool:
        """Two attempts 'start' on workers (their RUNNING child runs exist) and never finish."""

        max_in_flight = 2

        def __init__(self):
            self.submitted, self.aborted = [], None

        def submit(self, planned, target, retries, attempt):
            client = tracking.ensure_store(target.tracking_uri)
            tracking.start_child(client, target.experiment_id, target.parent_run_id, planned.config.to_dict(),
                                 {tracking.TAG_HASH: planned.config_hash}, "in flight")
            self.submitted.append(planned.config_hash)
            if len(self.submitted) == 2:
                threading.Thread(target=self.press_ctrl_c, daemon=True).start()  # Ctrl-C while the driver waits
            return Future()

        def press_ctrl_c(self):
            """Ctrl-C after 0.3 s, pressed again every 2 s until the driver aborts: a Ctrl-C that Python handles while
            the garbage collector runs some object's ``__del__`` is swallowed there (seen once in 3 full-suite runs)."""
            time.sleep(0.3)
            for _ in range(30):
                if self.aborted is not None:
                    return
                _thread.interrupt_main()
                time.sleep(2.0)

        def abort(self, futures):
            self.aborted = list(futures)
            return True

        def close(self):
            pass

    pool = HangingPool()
    # interrupt_main() raises KeyboardInterrupt only under a Python-level SIGINT handler: a pytest started as a shell's
    # background job (`pytest &`) inherits SIGINT ignored, and Python then keeps SIG_IGN. A `python -m collect` run
    # from a terminal has the default handler; test_ctrl_c_on_the_command_line_exits_130_and_leaves_no_run_running
    # covers that process.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(runs, sweep="par", tracking_uri=mlflow_uri, device="cpu", progress=False,
                      executor=lambda todo, target: drive(todo, target, pool, retries=2))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(pool.submitted) == 2 and len(pool.aborted) == 2  # the other two were never submitted
    kids = children(mlflow_uri, "par")
    assert len(kids) == 2 and {k.info.status for k in kids} == {"KILLED"}
    parent = MlflowClient(tracking_uri=mlflow_uri).get_run(kids[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED"


def test_bad_executor_options_name_the_flag():
    for kwargs, flag in [({"workers": 0}, "--workers"), ({"retries": -1}, "--retries"), ({"scheduler": "tcp://h:8786"}, "--scheduler")]:
        with pytest.raises(ExecutorError, match=flag):
            with open_executor("local", **kwargs):
                pass
    with pytest.raises(ExecutorError, match="--workers"):
        with open_executor("dask", workers=2, scheduler="tcp://127.0.0.1:1"):
            pass
    with pytest.raises(ExecutorError, match="--scheduler tcp://127.0.0.1:1"):
        with DaskExecutor("tcp://127.0.0.1:1", connect_timeout=2):
            pass


def test_command_line_flags_reach_the_executor(tmp_path, mlflow_uri, capsys):
    from collect.cli import main

    spec = tmp_path / "one.toml"
    spec.write_text(CLI_SPEC.replace("max_epochs = 40", "max_epochs = 1").replace("n_train = 300", "n_train = 60"))
    assert main(["--config", str(spec), "--workers", "0", "--tracking-uri", mlflow_uri]) == 2
    assert "--workers 0" in capsys.readouterr().err
    assert main(["--config", str(spec), "--executor", "local", "--workers", "1", "--retries", "0", "--max-runs", "1",
                 "--tracking-uri", mlflow_uri, "--no-progress", "--device", "cpu"]) == 0
    (kid,) = children(mlflow_uri, "fault-cli")
    parent = MlflowClient(tracking_uri=mlflow_uri).get_run(kid.data.tags["mlflow.parentRunId"])
    assert kid.info.status == "FINISHED" and parent.data.tags["executor"] == "local"
    assert worker_pid(kid) == os.getpid()  # --workers 1 trains in this process


# ------------------------------------------------------------------ whole sweeps: inline, Dask in-process, process pool


@pytest.fixture(scope="module")
def inline_sweep(mlflow_template, tmp_path_factory):
    """SPEC run in this process, one configuration after another: the reference metrics."""
    uri = fresh_store(mlflow_template, tmp_path_factory.mktemp("inline") / "store")
    summary = run_sweep(runs_of(), sweep="par", tracking_uri=uri, device="cpu", progress=False,
                        executor=local_executor(1), torch_threads=1)
    assert summary.finished == 4
    return uri, result_metrics(children(uri, "par"))


def test_dask_path_runs_each_configuration_once_with_the_inline_metrics(inline_sweep, mlflow_uri):
    """The Dask executor against an in-process cluster (no worker processes to start, so it stays fast), fed the
    configurations in reverse order: identical metrics show results do not depend on what a worker ran before."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with DaskExecutor(cluster.scheduler_address, retries=1) as executor:
            summary = run_sweep(runs_of()[::-1], sweep="par", tracking_uri=mlflow_uri, device="cpu", progress=False, executor=executor)
    assert summary.finished == 4 and summary.failed == 0
    kids = children(mlflow_uri, "par")
    assert len(kids) == 4 and finished_once(kids, runs_of())
    assert {k.data.tags["mlflow.parentRunId"] for k in kids} == {summary.parent_run_id}
    reference = inline_sweep[1]
    assert result_metrics(kids) == reference and all(len(m) > 10 for m in reference.values())


@pytest.fixture(scope="module")
def local_sweep(mlflow_template, tmp_path_factory):
    """SPEC on two worker processes writing concurrently to one SQLite store."""
    uri = fresh_store(mlflow_template, tmp_path_factory.mktemp("local") / "store")
    summary = run_sweep(runs_of(), sweep="par", tracking_uri=uri, device="cpu", progress=False,
                        executor=local_executor(2, retries=0), torch_threads=1)
    return uri, summary


def test_two_worker_processes_share_one_sqlite_store_and_match_the_inline_metrics(local_sweep, inline_sweep):
    uri, summary = local_sweep
    assert summary.finished == 4 and summary.failed == 0  # retries=0: no locked database was papered over
    kids = children(uri, "par")
    assert len(kids) == 4 and finished_once(kids, runs_of())
    assert os.getpid() not in {worker_pid(k) for k in kids}  # trained in the pool's processes
    assert result_metrics(kids) == inline_sweep[1]  # exact: same seeds, same torch threads (1), same CPU kernels


def worker_pid(run) -> int:
    return int(run.data.tags["worker"].rsplit(":", 1)[1])


def slow_spec(name: str) -> dict:
    """Three configurations, each training for a few seconds, so that a run can be caught in progress."""
    return {**SPEC, "name": name, "grid": {"optim.lr": [0.05, 0.1, 0.2]},
            "base": {**SPEC["base"], "data": {"dataset": "digits", "n_train": 300, "n_test": 40},
                     "stop": {"max_epochs": 400}, "optim": {"lr": 0.1, "batch_size": 10}}}


def kill_first_running_run(uri: str, experiment: str, alive, sig=signal.SIGKILL, timeout: float = 180):
    """Wait until a child run of ``experiment`` is RUNNING, send ``sig`` to the worker training it, return the run."""
    mlflow, deadline = MlflowClient(tracking_uri=uri), time.time() + timeout
    while alive() and time.time() < deadline:
        exp = mlflow.get_experiment_by_name(experiment)
        running = [k for k in tracking.child_runs(mlflow, exp.experiment_id) if k.info.status == "RUNNING"] if exp else []
        if running:
            os.kill(worker_pid(running[0]), sig)
            return running[0]
        time.sleep(0.1)
    return None


def check_fault_recovered(uri: str, experiment: str, runs, summary, killed) -> None:
    assert killed is not None, "no run was caught in progress"
    assert summary.finished == len(runs) and summary.failed == 0
    kids = children(uri, experiment)
    assert finished_once(kids, runs)
    dead = MlflowClient(tracking_uri=uri).get_run(killed.info.run_id)
    assert dead.info.status == "FAILED" and dead.data.tags["failure_reason"] == executors.WORKER_DIED
    assert {k.info.status for k in kids} <= {"FINISHED", "FAILED"}  # nothing left RUNNING, nothing partial FINISHED


@pytest.mark.slow
def test_local_pool_worker_killed_mid_run_is_retried_with_a_fresh_run(mlflow_uri):
    runs = expand(parse_spec(slow_spec("fault-local"), "fault.toml"))
    result: dict = {}

    def sweep():
        result["summary"] = run_sweep(runs, sweep="fault-local", tracking_uri=mlflow_uri, device="cpu", progress=False,
                                      executor=local_executor(2, retries=2), torch_threads=1)

    thread = threading.Thread(target=sweep)
    thread.start()
    killed = kill_first_running_run(mlflow_uri, "fault-local", thread.is_alive)
    thread.join(timeout=300)
    check_fault_recovered(mlflow_uri, "fault-local", runs, result["summary"], killed)


CLI_SPEC = """
name = "fault-cli"
seeds = [0]
measures = ["margins"]
[base.data]
dataset = "digits"
n_train = 300
n_test = 40
[base.model]
arch = "fcn"
width = 8
depth = 1
[base.optim]
lr = 0.1
batch_size = 10
[base.stop]
max_epochs = 40
[grid]
"optim.lr" = [0.05, 0.1, 0.2, 0.3]
"""


@pytest.mark.slow
def test_ctrl_c_on_the_command_line_exits_130_and_leaves_no_run_running(tmp_path, mlflow_uri):
    spec = tmp_path / "fault_cli.toml"
    spec.write_text(CLI_SPEC.replace("max_epochs = 40", "max_epochs = 600"))  # runs of seconds: caught while training
    repo = Path(__file__).resolve().parents[2]
    driver = subprocess.Popen([sys.executable, "-m", "collect", "--config", str(spec), "--workers", "2", "--tracking-uri", mlflow_uri,
                               "--no-progress", "--device", "cpu"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              # as from an interactive shell: a shell's background job (`pytest &`) ignores SIGINT and
                              # its children inherit that, so Python would install no KeyboardInterrupt handler
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        caught = kill_first_running_run(mlflow_uri, "fault-cli", lambda: driver.poll() is None, sig=0)  # signal 0: only wait
        driver.send_signal(signal.SIGINT)  # to the driver alone: it must stop its workers itself
        _, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert caught is not None and driver.returncode == 130, err[-2000:]
    kids = children(mlflow_uri, "fault-cli")
    statuses = collections.Counter(k.info.status for k in kids)
    assert statuses["KILLED"] >= 1 and "RUNNING" not in statuses and len(kids) < 4, (statuses, err[-3000:])  # pending runs never started
    for k in kids:
        if k.info.status == "KILLED":
            with pytest.raises(ProcessLookupError):  # the worker that trained it is gone
                os.kill(worker_pid(k), 0)
    client = MlflowClient(tracking_uri=mlflow_uri)
    parent = client.get_run(kids[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED"


# ------------------------------------------------------------------ a real tracking server and worker processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(backend: str, root: Path):
    """A real MLflow tracking server on a free port of 127.0.0.1 (served artifacts under ``root``), stopped at the end."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend, "--artifacts-destination", str(root / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=root,
    )
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"mlflow server did not start (exit code {server.poll()})")
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server's own process group (uvicorn and its worker)
        server.wait(timeout=60)


@pytest.fixture(scope="module")
def server_and_cluster(mlflow_template, tmp_path_factory):
    """A real MLflow tracking server on 127.0.0.1 (SQLite backend, served artifacts) and a 2-worker LocalCluster."""
    from distributed import Client, LocalCluster

    root = tmp_path_factory.mktemp("server")
    backend = fresh_store(mlflow_template, root / "backend")  # already migrated: the server starts in seconds
    with mlflow_server(backend, root) as uri, LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                          dashboard_address=None) as cluster:
        with Client(cluster) as client:
            yield uri, cluster, client


@pytest.fixture(scope="module")
def dask_sweep(server_and_cluster):
    uri, cluster, _ = server_and_cluster
    with DaskExecutor(cluster.scheduler_address, retries=1) as executor:
        summary = run_sweep(runs_of(), sweep="par", tracking_uri=uri, device="cpu", progress=False, executor=executor)
    return uri, summary


@pytest.mark.slow
def test_dask_workers_log_each_configuration_once_to_a_tracking_server(dask_sweep, server_and_cluster):
    uri, summary = dask_sweep
    _, _, client = server_and_cluster
    assert summary.finished == 4 and summary.failed == 0
    kids = children(uri, "par")
    assert len(kids) == 4 and finished_once(kids, runs_of())
    worker_pids = set(client.run(os.getpid).values())
    mlflow = MlflowClient(tracking_uri=uri)
    for kid in kids:
        assert kid.data.tags["mlflow.parentRunId"] == summary.parent_run_id
        assert worker_pid(kid) in worker_pids  # trained on a Dask worker process
        assert {"gen/test_acc", "gen/gap_acc", "measure/margin_mean", "measure/l2_norm"} <= set(kid.data.metrics)
        files = {f.path for f in mlflow.list_artifacts(kid.info.run_id)} | {f.path for f in mlflow.list_artifacts(kid.info.run_id, "per_sample")}
        assert {"config.json", "curves.json", "per_sample/margins.parquet"} <= files


@pytest.mark.slow
def test_local_and_dask_worker_processes_give_identical_metrics(local_sweep, dask_sweep, inline_sweep):
    local, dask = result_metrics(children(local_sweep[0], "par")), result_metrics(children(dask_sweep[0], "par"))
    assert len(local) == 4 and local == dask == inline_sweep[1]


@pytest.mark.slow
def test_dask_worker_killed_mid_run_leaves_no_partial_finished_run(server_and_cluster):
    uri, cluster, _ = server_and_cluster
    runs = expand(parse_spec(slow_spec("fault"), "fault.toml"))
    result: dict = {}

    def sweep():
        with DaskExecutor(cluster.scheduler_address, retries=2) as executor:
            result["summary"] = run_sweep(runs, sweep="fault", tracking_uri=uri, device="cpu", progress=False, executor=executor)

    thread = threading.Thread(target=sweep)
    thread.start()
    killed = kill_first_running_run(uri, "fault", thread.is_alive)
    thread.join(timeout=300)
    check_fault_recovered(uri, "fault", runs, result["summary"], killed)
