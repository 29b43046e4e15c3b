"""The process context of the local executor's workers, and starting it before the driver needs it.

Workers are forked from a fork server (``forkserver`` where the OS has it, else ``spawn``; never plain ``fork``,
unsafe once torch's thread pools or CUDA have started). The fork server imports torch, MLflow and the toolkit once
(≈ 3 s on one core); every worker, including those that replace a dead one, is forked from it in milliseconds.
``start_worker_server`` launches it at once, so those imports run beside the driver's own start-up (reading the
spec, opening the store) instead of after it. This module imports neither torch nor MLflow.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os

# What the fork server imports before it forks the first worker: the guard first (it dies with the driver); the
# SciPy and scikit-learn parts the measures import on use (the driver never needs them).
PRELOAD: tuple[str, ...] = ("collect.forkserver_guard", "collect.executors", "collect.data", "collect.models", "collect.optim",
                            "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.tracking.rest_store",
                            "scipy.linalg", "scipy.optimize", "scipy.stats", "sklearn.neighbors")


def usable_cores() -> int:
    """Cores this process may run on (respects taskset, cgroups and SLURM allocations), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def local_workers(workers: int | None) -> int:
    """Runs the local executor trains at once: ``--workers`` when given, else every usable core."""
    return workers or usable_cores()


def worker_context() -> multiprocessing.context.BaseContext:
    """The fork-server context with ``PRELOAD`` and every measure module preloaded; ``spawn`` without a fork server."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from collect.measures.registry import MEASURE_MODULES

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([*PRELOAD, *MEASURE_MODULES])
    return ctx


def start_worker_server(workers: int | None) -> bool:
    """Launch the fork server now (it preloads in the background; the first worker's fork waits for it); False
    where there is no fork server or ``workers`` (None: the usable cores) is 1, so runs train in the driver.
    Idempotent: the pool opened later uses the same server."""
    if local_workers(workers) < 2 or "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    from multiprocessing import forkserver

    worker_context()
    forkserver.ensure_running()
    return True
