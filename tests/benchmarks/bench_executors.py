"""Throughput of parallel sweeps, measured side by side in one process.

    python tests/benchmarks/bench_executors.py               # first 8 runs of the quick sweep, 24 tiny runs
    python tests/benchmarks/bench_executors.py --runs 32     # the whole quick sweep (several minutes on 2 cores)

A. The ``quick`` sweep (its first ``--runs`` configurations) with the local executor:
   ``--workers 1`` (in this process, torch using every core), ``--workers 2`` (two processes, torch threads =
   cores // 2, what ``python -m collect`` does) and ``--workers 2`` with every process using every core (the
   oversubscription the thread setting avoids). The fork server that worker processes are forked from is started
   (and timed) first; each sweep's wall time still includes forking its workers and their first MLflow connection.
B. Overhead per run of the Dask path vs the local pool: the marginal wall time per run of configurations that
   train for a fraction of a second, on 2 local workers vs a warm 2-worker Dask LocalCluster, so that what differs
   is submission, serialisation and scheduling, not training or start-up.

Every sweep writes to its own fresh SQLite store. The machine may be shared: the load average is printed beside
every number, and numbers taken under different loads should not be compared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from collect import tracking  # noqa: E402
from collect.executors import DaskExecutor, local_executor, threads_per_run, usable_cores  # noqa: E402
from collect.runner import run_sweep  # noqa: E402
from collect.sweep import expand, find_sweep, load_spec, parse_spec  # noqa: E402

TINY = {
    "name": "bench-tiny",
    "seeds": [0],
    "measures": ["norms"],
    "base": {
        "data": {"dataset": "digits", "n_train": 60, "n_test": 40},
        "model": {"arch": "fcn", "width": 8, "depth": 1},
        "optim": {"lr": 0.1, "batch_size": 60},
        "stop": {"max_epochs": 1},
    },
}


def load() -> str:
    return "load %.1f" % os.getloadavg()[0]


class Stores:
    """Fresh SQLite stores copied from one migrated template (migrating costs seconds that are not the executor's)."""

    def __init__(self, root: Path):
        self.root, self.n = root, 0
        self.template = root / "template.db"
        tracking.ensure_store(f"sqlite:///{self.template}")

    def fresh(self) -> str:
        self.n += 1
        folder = self.root / f"store{self.n}"
        folder.mkdir()
        shutil.copy(self.template, folder / "mlflow.db")
        return f"sqlite:///{folder / 'mlflow.db'}"


def timed_sweep(runs, name: str, uri: str, executor, threads: int | None) -> tuple[float, int, float]:
    """Wall seconds, finished runs, and the summed training seconds the runs report."""
    started = time.perf_counter()
    summary = run_sweep(runs, sweep=name, tracking_uri=uri, device="cpu", executor=executor, progress=False, torch_threads=threads)
    wall = time.perf_counter() - started
    train = sum(o.metrics.get("train.seconds", 0.0) for o in summary.outcomes)
    return wall, summary.finished, train


def part_a(stores: Stores, n_runs: int) -> None:
    cores = usable_cores()
    runs = expand(load_spec(find_sweep("quick")))[:n_runs]
    print(f"A. quick sweep, first {len(runs)} runs, {cores} usable cores")
    tiny = expand(parse_spec({**TINY, "grid": {"optim.lr": [0.05, 0.1]}}, "warm.toml"))
    before = load()
    wall, _, _ = timed_sweep(tiny, "warm", stores.fresh(), local_executor(2), 1)
    print(f"   starting the worker fork server (imports torch and MLflow once per driver) + 2 tiny runs: {wall:.1f} s ({before})")
    cases = [
        (f"--workers 1 (in-process), {threads_per_run(cores, 1)} threads", local_executor(1), threads_per_run(cores, 1)),
        ("--workers 1 (in-process), 1 thread", local_executor(1), 1),
        (f"--workers 2, {threads_per_run(cores, 2)} thread(s) each", local_executor(2), threads_per_run(cores, 2)),
        (f"--workers 2, {cores} threads each", local_executor(2), cores),
    ]
    results = {}
    for label, executor, threads in cases:
        before = load()
        wall, finished, train = timed_sweep(runs, "quick", stores.fresh(), executor, threads)
        results[label] = wall
        print(f"   {label:<36} {wall:7.1f} s  {60 * finished / wall:6.1f} runs/min  finished {finished}/{len(runs)}  "
              f"sum of train.seconds {train:7.1f}  ({before} -> {load()})")
    w1, w1_single, w2, over = (results[label] for label, _, _ in cases)
    print(f"   speed-up of --workers 2 over --workers 1: {w1 / w2:.2f}x with the default threads, {w1_single / w2:.2f}x at "
          f"one thread per run (parallelism alone); {cores} threads per worker process is {over / w2:.2f}x slower")


def part_b(stores: Stores, n_runs: int) -> None:
    """Marginal seconds per run: (wall(n + k runs) - wall(k runs)) / n on the same executor, so that fixed costs
    (forking the pool's workers, their first torch and MLflow calls) cancel and what is left is per-run cost."""
    from distributed import LocalCluster

    k = 4
    spec = {**TINY, "grid": {"optim.lr": [0.01 * (i + 1) for i in range(n_runs + k)]}}
    runs = expand(parse_spec(spec, "bench-tiny.toml"))
    print(f"B. per-run cost: runs training a fraction of a second, 2 workers; marginal = (wall({n_runs + k}) - wall({k})) / {n_runs}")

    def measure(label: str, executor, threads) -> float:
        before = load()
        small, _, _ = timed_sweep(runs[:k], "bench-small", stores.fresh(), executor, threads)
        large, done, _ = timed_sweep(runs, "bench-large", stores.fresh(), executor, threads)
        per_run = (large - small) / n_runs
        print(f"   {label:<12} {k} runs {small:6.1f} s, {len(runs)} runs {large:6.1f} s (finished {done}):  "
              f"{per_run:.3f} s per run  ({before} -> {load()})")
        return per_run

    local = local_executor(2, retries=0)
    timed_sweep(runs[:2], "warm", stores.fresh(), local, 1)  # starts the fork server
    local_per_run = measure("local pool", local, 1)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with DaskExecutor(cluster.scheduler_address, retries=0) as dask:
            timed_sweep(runs[:2], "warm", stores.fresh(), dask, None)  # workers import torch and MLflow once
            dask_per_run = measure("Dask", dask, None)
    print(f"   Dask overhead vs local pool: {(dask_per_run - local_per_run) * 1000:+.0f} ms per run")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=8, help="first N configurations of the quick sweep (32 in all)")
    p.add_argument("--tiny-runs", type=int, default=24, help="extra tiny configurations for the per-run overhead")
    p.add_argument("--skip-a", action="store_true")
    p.add_argument("--skip-b", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stores = Stores(Path(tmp))
        if not args.skip_a:
            part_a(stores, args.runs)
        if not args.skip_b:
            part_b(stores, args.tiny_runs)


if __name__ == "__main__":
    main()
