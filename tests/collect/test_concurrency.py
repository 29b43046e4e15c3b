"""Several invocations at once and dying drivers: the claim protocol (``collect.claims``) in-process, then real
``python -m collect`` processes racing on a fresh SQLite store, an existing one and a tracking server, and a driver
killed with SIGKILL whose workers must follow it."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from collect import claims, tracking
from collect.sweep import expand, parse_spec
from tests.collect.test_executors import CLI_SPEC, fresh_store, mlflow_server

REPO = Path(__file__).resolve().parents[2]
SPEC = (CLI_SPEC.replace('name = "fault-cli"', 'name = "race"').replace("n_train = 300", "n_train = 60")
        .replace("batch_size = 10", "batch_size = 20").replace("max_epochs = 40", "max_epochs = 1"))  # 4 configurations


def planned(text: str = SPEC):
    import tomllib

    return expand(parse_spec(tomllib.loads(text), "race.toml"))


def collect_process(spec: Path, uri: str, *extra: str) -> subprocess.Popen:
    """``python -m collect`` importing this worktree's code (PYTHONPATH), in the spec's folder."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "collect", "--config", str(spec), "--tracking-uri", uri, "--no-progress",
                             "--device", "cpu", *extra], cwd=spec.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_together(spec: Path, uri: str, *extra: str, timeout: float = 240) -> list[tuple[int, str, str]]:
    procs = [collect_process(spec, uri, *extra) for _ in range(2)]
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        finally:
            if p.poll() is None:
                p.kill()
        out.append((p.returncode, stdout, stderr))
    return out


def all_runs(uri: str, experiment: str = "race") -> list:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000)


def check_each_configuration_once(uri: str, runs, results) -> collections.Counter:
    for rc, stdout, stderr in results:
        assert rc == 0 and "Traceback" not in stderr and "error" not in stderr.lower(), stderr[-3000:]
    every = all_runs(uri)
    statuses = collections.Counter(r.info.status for r in every)
    assert statuses["RUNNING"] == 0 and statuses["FAILED"] == 0, statuses
    kids = [r for r in every if r.data.tags.get(tracking.TAG_KIND) == "config"]
    finished = collections.Counter(k.data.tags[tracking.TAG_HASH] for k in kids if k.info.status == "FINISHED")
    assert set(finished) == {r.config_hash for r in runs} and set(finished.values()) == {1}, finished  # union, no copy
    return statuses


def trained_by_each(results) -> list[int]:
    return [int(re.search(r": (\d+) finished", stdout).group(1)) for _, stdout, _ in results]


# ------------------------------------------------------------------ the claim protocol, in-process


def claim_run(client, exp_id: str, config_hash: str, tags: dict | None = None) -> str:
    all_tags = {tracking.TAG_KIND: "config", tracking.TAG_HASH: config_hash, **claims.owner_tags(), **(tags or {})}
    return client.create_run(exp_id, tags=all_tags).info.run_id


def test_of_many_claims_made_at_once_exactly_one_wins(mlflow_uri):
    """8 threads create a claim on one configuration and race through the protocol; 5 rounds, 5 configurations."""
    client = tracking.ensure_store(mlflow_uri)
    exp_id = tracking.get_or_create_experiment(client, "race", mlflow_uri)
    for round_ in range(5):
        h = f"hash{round_}"
        barrier, results = threading.Barrier(8), []

        def contend():
            barrier.wait()
            run_id = claim_run(client, exp_id, h)
            results.append((run_id, claims.claim(client, exp_id, h, run_id)))

        threads = [threading.Thread(target=contend) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        winners = [run_id for run_id, c in results if c.won]
        assert len(results) == 8 and len(winners) == 1, results
        assert {c.holder for _, c in results if not c.won} <= {winners[0]} | {r for r, _ in results}


def test_a_late_claim_loses_to_a_live_winner_and_to_a_finished_run(mlflow_uri):
    client = tracking.ensure_store(mlflow_uri)
    exp_id = tracking.get_or_create_experiment(client, "race", mlflow_uri)
    first = claim_run(client, exp_id, "h")
    assert claims.claim(client, exp_id, "h", first).won
    late = claim_run(client, exp_id, "h")
    lost = claims.claim(client, exp_id, "h", late)
    assert not lost.won and lost.holder == first
    claims.release_lost(client, late, lost)
    assert client.get_run(late).info.lifecycle_stage == "deleted"  # invisible to resume and to the ledger
    client.set_terminated(first, "FINISHED")
    again = claim_run(client, exp_id, "h")
    assert claims.claim(client, exp_id, "h", again) == claims.Claim(False, first, "already FINISHED")


def test_a_claim_whose_owner_died_is_taken_over(mlflow_uri):
    client = tracking.ensure_store(mlflow_uri)
    exp_id = tracking.get_or_create_experiment(client, "race", mlflow_uri)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer exists on this host
    dead_pid = claim_run(client, exp_id, "h", {claims.TAG_OWNER: f"{os.uname().nodename}:{gone.pid}", claims.TAG_TICKET: "1"})
    silent = claim_run(client, exp_id, "h", {claims.TAG_OWNER: "elsewhere:1", claims.TAG_TICKET: "1",
                                             claims.TAG_HEARTBEAT: f"{time.time() - claims.STALE_S - 1:.3f}"})
    alive_elsewhere = claim_run(client, exp_id, "h2", {claims.TAG_OWNER: "elsewhere:1", claims.TAG_TICKET: "1"})
    mine = claim_run(client, exp_id, "h")
    assert claims.claim(client, exp_id, "h", mine).won
    for run_id in (dead_pid, silent):
        run = client.get_run(run_id)
        assert run.info.status == "FAILED" and run.data.tags["failure_reason"].startswith("owner gone")
    assert claims.is_alive(client.get_run(alive_elsewhere))  # another host with a fresh heartbeat: alive
    with claims.Heartbeat(client, mine, every=0.05):
        time.sleep(0.5)
    assert claims.heartbeat_age(client.get_run(mine)) < 1.0


# ------------------------------------------------------------------ real invocations racing on one store


def test_two_invocations_on_a_fresh_then_an_existing_sqlite_store_train_each_configuration_once(tmp_path):
    spec = tmp_path / "race.toml"
    spec.write_text(SPEC)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"  # does not exist yet: both processes create it at once
    runs = planned()
    started = time.perf_counter()
    fresh = run_together(spec, uri, "--workers", "1", "--max-runs", "2")
    check_each_configuration_once(uri, runs[:2], fresh)
    assert sum(trained_by_each(fresh)) == 2
    existing = run_together(spec, uri, "--workers", "1")  # the same store, now with 2 of 4 configurations done
    statuses = check_each_configuration_once(uri, runs, existing)
    assert sum(trained_by_each(existing)) == 2 and statuses["FINISHED"] == 4 + 4  # 4 configurations, 4 parents
    print(f"two pairs of invocations: {time.perf_counter() - started:.1f} s; trained per invocation: "
          f"{trained_by_each(fresh)}, {trained_by_each(existing)}")


@pytest.mark.slow
def test_two_invocations_against_a_tracking_server_train_each_configuration_once(tmp_path, mlflow_template):
    spec = tmp_path / "race.toml"
    spec.write_text(SPEC)
    backend = fresh_store(mlflow_template, tmp_path / "backend")
    with mlflow_server(backend, tmp_path) as uri:
        results = run_together(spec, uri, "--workers", "1")
        check_each_configuration_once(uri, planned(), results)
        assert sum(trained_by_each(results)) == 4
        print(f"against a tracking server, trained per invocation: {trained_by_each(results)}")


# ------------------------------------------------------------------ a driver killed with SIGKILL


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children, ...), read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def cmdline(pid: int) -> bytes:
    """The first 100 bytes of a process's command line (empty once it has exited)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:100]
    except OSError:
        return b""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_workers_exit_when_the_driver_is_killed_and_the_next_invocation_closes_its_runs(tmp_path, capsys):
    from collect.cli import main

    spec = tmp_path / "race.toml"
    spec.write_text(SPEC.replace("n_train = 60", "n_train = 300").replace("batch_size = 20", "batch_size = 10")
                    .replace("max_epochs = 1", "max_epochs = 600"))  # runs of seconds: caught while training
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = collect_process(spec, uri, "--workers", "2")
    try:
        client, deadline, running = None, time.time() + 180, []
        while not running and driver.poll() is None and time.time() < deadline:
            time.sleep(0.2)
            if (tmp_path / "mlflow.db").exists():
                client = client or tracking.ensure_store(uri)  # under the store lock: never while the driver migrates
                exp = client.get_experiment_by_name("race")
                running = [k for k in tracking.child_runs(client, exp.experiment_id) if k.info.status == "RUNNING"] if exp else []
        assert running, driver.communicate()[1][-3000:]
        workers = descendants(driver.pid)  # fork server, resource tracker, pool workers
        assert len(workers) >= 3
        names = {p: cmdline(p) for p in workers}  # before the kill: a process may be gone by the time it is read
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        killed, gone = time.perf_counter(), {}
        while len(gone) < len(workers) and time.perf_counter() - killed < 10:
            gone.update({p: time.perf_counter() - killed for p in workers if p not in gone and not claims.process_alive(p)})
            time.sleep(0.05)
        assert len(gone) == len(workers), f"still alive 10 s after the driver died: {set(workers) - set(gone)}"
    finally:
        if driver.poll() is None:
            driver.kill()
    print("seconds from SIGKILL of the driver until each process was gone:",
          {names[p].decode(errors="replace")[-60:]: round(t, 2) for p, t in gone.items()})
    assert main(["--config", str(spec), "--tracking-uri", uri, "--no-progress", "--device", "cpu", "--workers", "1",
                 "--max-runs", "1"]) == 0
    every = all_runs(uri)
    assert not [r for r in every if r.info.status == "RUNNING"]
    stale_parent = [r for r in every if r.data.tags.get(tracking.TAG_KIND) == "sweep" and r.info.status == "FAILED"]
    assert len(stale_parent) == 1 and stale_parent[0].data.tags["failure_reason"].startswith("driver stopped")
    closed = [r for r in every if r.info.run_id in {k.info.run_id for k in running}]
    assert closed and {r.info.status for r in closed} == {"FAILED"}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_dask_local_cluster_workers_exit_when_their_driver_is_killed():
    """``--executor dask`` without --scheduler: the LocalCluster's processes die with the driver (Dask's own pipe)."""
    code = ("from distributed import LocalCluster; c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, "
            "dashboard_address=None); print('up', flush=True); import time; time.sleep(600)")
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert driver.stdout.readline().strip() == "up"
        workers = descendants(driver.pid)
        assert len(workers) >= 2
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        killed = time.perf_counter()
        while any(claims.process_alive(p) for p in workers) and time.perf_counter() - killed < 10:
            time.sleep(0.05)
        assert not any(claims.process_alive(p) for p in workers)
        print(f"{len(workers)} LocalCluster processes gone {time.perf_counter() - killed:.2f} s after SIGKILL of the driver")
    finally:
        if driver.poll() is None:
            driver.kill()
