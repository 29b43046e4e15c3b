"""Run a sweep's configurations in parallel: a local process pool or a Dask cluster (``python -m collect --executor``).

Both are ``collect.runner.Executor``s: given the planned runs and the ``SweepTarget`` they yield one ``RunOutcome``
per configuration, in completion order. Every attempt calls ``run_one`` on a worker, which logs a child run of the
sweep's parent directly to the tracking store (the driver created and migrated the store before anything ran).
Failure handling is the same for both:

- a worker that dies leaves its child run RUNNING; the next attempt of that configuration (or the driver, when it
  gives up) marks that run FAILED with ``failure_reason`` "worker died ...", so no partial run is ever FINISHED;
- an attempt that raises (worker died, process pool broke, store unreachable) or fails on a transient store error
  ("database is locked") is retried with a fresh child run at most ``retries`` times, then recorded FAILED with the
  reason; a failure of the configuration itself (divergence, a measure error) is a result and is not retried;
- Ctrl-C, or closing the iterator, cancels the runs not yet started, stops the workers this process started and
  marks the runs they were training KILLED;
- a driver killed outright (SIGKILL) takes its local processes with it: the fork server dies with it
  (``collect.forkserver_guard``), pool workers poll it and exit (``_exit_with_driver``); the runs they were training
  stay RUNNING with a dead owner until the next invocation closes them (``collect.claims``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence
from urllib.parse import urlparse

from collect import tracking
from collect.store_check import write_failure
from collect.runner import Executor, RunOutcome, SweepTarget, run_one
from collect.sweep import PlannedRun
from collect.train_stacked import replay_train
from collect.worker_context import local_workers, usable_cores, worker_context  # noqa: F401 - usable_cores re-exported

DEFAULT_RETRIES = 2
TAG_FAILURE_KIND = "failure_kind"  # worker_died | error | interrupted: why an attempt ended without a result
WORKER_DIED = "worker died: the process running this configuration stopped before it finished"
INTERRUPTED = "interrupted (Ctrl-C on the driver); re-run the same command to resume"
# Failure reasons that say the store, not the configuration, failed; such attempts are retried.
TRANSIENT_MARKERS = ("database is locked", "IntegrityError", "API request to", "Connection refused", "ConnectionError", "ConnectTimeout")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class ExecutorError(RuntimeError):
    """A bad executor option or an unreachable cluster; the message names the flag and the fix."""


def threads_per_run(cores: int, runs_in_parallel: int) -> int:
    """Torch intra-op threads per run so that parallel runs do not oversubscribe the cores."""
    return max(1, cores // max(1, runs_in_parallel))


# ---------------------------------------------------------------- worker side


def attempts_of(client, target: SweepTarget, config_hash: str) -> list:
    """Child runs of this configuration under this sweep invocation's parent (every attempt, any status)."""
    parts = [f"tags.`{tracking.TAG_HASH}` = '{config_hash}'"]
    if target.parent_run_id:
        parts.append(f"tags.`{tracking.PARENT_TAG}` = '{target.parent_run_id}'")
    return list(client.search_runs([target.experiment_id], " and ".join(parts), max_results=1000))


def close_attempts(client, target: SweepTarget, config_hash: str, status: str, reason: str, kind: str) -> list[str]:
    """Terminate this configuration's attempts still RUNNING (their process is gone) with ``status`` and a reason.

    Only one attempt of a configuration is in flight at a time, so a RUNNING attempt seen by a new attempt or by
    the driver after a failure belongs to a process that will never close it.
    """
    closed = []
    for run in attempts_of(client, target, config_hash):
        if run.info.status == "RUNNING":
            tracking.log_tags(client, run.info.run_id, {TAG_FAILURE_KIND: kind})
            tracking.terminate(client, run.info.run_id, status, reason)
            closed.append(run.info.run_id)
    return closed


def run_attempt(planned: PlannedRun, target: SweepTarget, retries: int, host_slots: Mapping[str, int] | None = None,
                stacked: Any = None) -> RunOutcome:
    """One attempt of one configuration, on a worker: close attempts a dead worker left RUNNING, then ``run_one``.

    The worker-death count lives in the store, so it also bounds re-runs that a Dask scheduler makes on its own
    when a worker dies (``distributed.scheduler.allowed-failures``). ``host_slots`` (Dask only): runs that can be in
    flight on each host, to size torch's thread pool on this worker. ``stacked``: the run's result of stacked
    training (``collect.train_stacked.StackedRun``), which ``run_one`` then measures and logs instead of training.
    """
    client = tracking.ensure_store(target.tracking_uri)
    h = planned.config_hash
    earlier = attempts_of(client, target, h)
    for run in earlier:
        if run.info.status == "RUNNING":
            tracking.log_tags(client, run.info.run_id, {TAG_FAILURE_KIND: "worker_died"})
            tracking.terminate(client, run.info.run_id, "FAILED", WORKER_DIED)
    died = [r for r in earlier if r.info.status == "RUNNING" or r.data.tags.get(TAG_FAILURE_KIND) == "worker_died"]
    if len(died) > retries:
        reason = f"worker died {len(died)} times running this configuration; gave up (--retries {retries})"
        return RunOutcome(h, died[-1].info.run_id, "FAILED", reason)
    if host_slots is not None:
        target = replace(target, torch_threads=_dask_worker_threads(host_slots))
    try:
        if stacked is None:
            return run_one(planned, target)
        return run_one(planned, target, train_fn=replay_train(stacked))
    except Exception as exc:  # escaped run_one: the store failed around the run, not the configuration
        with contextlib.suppress(Exception):
            close_attempts(client, target, h, "FAILED", f"{type(exc).__name__}: {exc}", "error")
        raise


def _dask_worker_threads(host_slots: Mapping[str, int]) -> int:
    from distributed import get_worker

    worker = get_worker()
    slots = host_slots.get(urlparse(worker.address).hostname or "") or getattr(worker, "nthreads", 1)
    return threads_per_run(usable_cores(), slots)


WATCHDOG_S = 0.5  # how often a pool worker checks that its driver is alive


def _init_worker(driver_pid: int) -> None:
    """Pool workers leave Ctrl-C to the driver, which cancels, stops them and marks their runs KILLED; and they exit
    when the driver dies (SIGKILL gives it no chance to stop them), so no orphan trains on or sleeps forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_driver, args=(driver_pid,), name="driver-watchdog", daemon=True).start()


def _exit_with_driver(driver_pid: int, every: float = WATCHDOG_S) -> None:
    """Poll the driver (a pool worker's parent is the fork server, so PR_SET_PDEATHSIG would watch the wrong process);
    once it is gone, exit at once. The run in flight stays RUNNING with a dead owner; the next invocation closes it."""
    from collect.claims import process_alive

    while process_alive(driver_pid):
        time.sleep(every)
    os._exit(70)


# ---------------------------------------------------------------- driver side


class _Pool(Protocol):
    max_in_flight: int | None  # None: submit everything at once and let the engine queue

    def submit(self, planned: PlannedRun, target: SweepTarget, retries: int, attempt: int) -> Any: ...

    def abort(self, futures: Sequence[Any]) -> bool:
        """Cancel ``futures`` and stop the workers; True when attempts in flight were stopped (their runs are dead)."""
        ...

    def close(self) -> None: ...


def drive(runs: Sequence[PlannedRun], target: SweepTarget, pool: _Pool, retries: int) -> Iterator[RunOutcome]:
    """Submit every configuration to ``pool``, retry failed attempts, yield one outcome per configuration.

    On Ctrl-C, or when the consumer stops iterating, the attempts not yet started are cancelled, the pool stops its
    workers and the runs they were training are marked KILLED.
    """
    client = tracking.ensure_store(target.tracking_uri)
    live: dict[int, tuple[Any, PlannedRun, int]] = {}
    completed = False
    try:
        # The loop lives in its own generator: CPython 3.11 attributes a KeyboardInterrupt delivered at a loop's
        # backward jump to the instruction before the loop, so a loop that opens a ``try`` can skip its ``finally``.
        yield from _submit_and_collect(runs, target, pool, retries, client, live)
        completed = True
    finally:
        if not completed:
            in_flight = list(live.values())
            if pool.abort([f for f, _, _ in in_flight]):
                for _, planned, _ in in_flight:
                    with contextlib.suppress(Exception):
                        close_attempts(client, target, planned.config_hash, "KILLED", INTERRUPTED, "interrupted")
        pool.close()


def _submit_and_collect(runs: Sequence[PlannedRun], target: SweepTarget, pool: _Pool, retries: int, client,
                        live: dict[int, tuple[Any, PlannedRun, int]]) -> Iterator[RunOutcome]:
    done: queue.SimpleQueue = queue.SimpleQueue()
    todo = list(reversed(runs))  # popped from the end: spec order
    tokens = itertools.count()

    def submit(planned: PlannedRun, attempt: int) -> None:
        token = next(tokens)
        future = pool.submit(planned, target, retries, attempt)
        live[token] = (future, planned, attempt)
        future.add_done_callback(lambda _, token=token: done.put(token))

    while todo or live:
        while todo and (pool.max_in_flight is None or len(live) < pool.max_in_flight):
            submit(todo.pop(), 0)
        token = _next_done(done)
        if token is None:
            continue
        future, planned, attempt = live.pop(token)
        outcome, error = _result(future)
        if outcome is not None and not is_transient(outcome):
            yield outcome
            continue
        reason = error if outcome is None else outcome.reason
        if attempt < retries and not write_failure(reason):  # a full disk fails every retry: the driver stops instead
            _note(f"configuration {planned.config_hash[:12]} ({planned.intervention}): {_first_line(reason)}; "
                  f"retrying ({attempt + 1}/{retries})")
            submit(planned, attempt + 1)
        else:
            yield _give_up(client, target, planned, reason, attempt + 1, outcome)


def _next_done(done: queue.SimpleQueue) -> int | None:
    """The token of an attempt that ended, or None after half a second (so that Ctrl-C is handled promptly)."""
    try:
        return done.get(timeout=0.5)
    except queue.Empty:
        return None


def is_transient(outcome: RunOutcome) -> bool:
    """A FAILED outcome caused by the store (locked SQLite, unreachable server) rather than by the configuration."""
    return outcome.status == "FAILED" and any(m in outcome.reason for m in TRANSIENT_MARKERS)


def _result(future: Any) -> tuple[RunOutcome | None, str]:
    try:
        return future.result(), ""
    except (KeyboardInterrupt, SystemExit):
        raise
    except BrokenProcessPool as exc:
        return None, f"worker died ({exc})"
    except BaseException as exc:  # KilledWorker, cancelled futures, errors raised by run_attempt
        name = type(exc).__name__
        return None, f"worker died ({name}: {exc})" if name == "KilledWorker" else f"{name}: {exc}"


def _give_up(client, target: SweepTarget, planned: PlannedRun, reason: str, attempts: int, outcome: RunOutcome | None) -> RunOutcome:
    """Record a configuration that failed every attempt: FAILED, with the reason, in the store and the outcome."""
    reason = f"failed {attempts} attempt(s); last: {reason}"
    run_id = outcome.run_id if outcome is not None else None
    try:
        kind = "worker_died" if "worker died" in reason else "error"
        closed = close_attempts(client, target, planned.config_hash, "FAILED", reason, kind)
        if run_id is None:
            earlier = attempts_of(client, target, planned.config_hash)
            run_id = closed[-1] if closed else (earlier[0].info.run_id if earlier else _record_failure(client, target, planned, reason))
    except Exception as exc:  # the store itself is unreachable: the outcome still carries the reason
        reason += f" (could not record it in the store: {type(exc).__name__}: {exc})"
    return RunOutcome(planned.config_hash, run_id, "FAILED", reason)


def _record_failure(client, target: SweepTarget, planned: PlannedRun, reason: str) -> str:
    """A FAILED child run for a configuration none of whose attempts got as far as creating one."""
    tags = {tracking.TAG_SWEEP: target.sweep, tracking.TAG_HASH: planned.config_hash,
            tracking.TAG_INTERVENTION: planned.intervention, "seed": str(planned.config.seed), **planned.interventions_tags()}
    run_id = tracking.start_child(client, target.experiment_id, target.parent_run_id, planned.config.to_dict(), tags,
                                  run_name=f"{planned.intervention} seed={planned.config.seed}")
    tracking.terminate(client, run_id, "FAILED", reason)
    return run_id


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _note(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


# ---------------------------------------------------------------- local pools


class InlinePool:
    """Runs each attempt in this process when it is submitted (``--workers 1``)."""

    max_in_flight = 1

    def __init__(self, stacked: Mapping[str, Any] | None = None):
        self.stacked = dict(stacked or {})  # config hash -> StackedRun to measure and log instead of training

    def submit(self, planned: PlannedRun, target: SweepTarget, retries: int, attempt: int) -> Future:
        future: Future = Future()
        try:
            future.set_result(run_attempt(planned, target, retries, None, self.stacked.get(planned.config_hash)))
        except Exception as exc:  # Ctrl-C propagates: run_one has already marked its run KILLED
            future.set_exception(exc)
        return future

    def abort(self, futures: Sequence[Any]) -> bool:
        return False

    def close(self) -> None:
        pass


class ProcessPool:
    """``concurrent.futures.ProcessPoolExecutor`` (fork server, else spawn) holding at most ``workers`` attempts.

    A worker that dies breaks the whole pool: every attempt in flight fails with ``BrokenProcessPool`` (and counts
    as a try), and the next submission starts a fresh pool. Keeping no more than ``workers`` attempts submitted
    means a death never costs a try to a configuration that had not started.
    """

    def __init__(self, workers: int, stacked: Mapping[str, Any] | None = None):
        self.workers = self.max_in_flight = workers
        self.stacked = dict(stacked or {})  # config hash -> StackedRun to measure and log instead of training
        self._pool: ProcessPoolExecutor | None = None

    def _open(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=worker_context(), initializer=_init_worker,
                                             initargs=(os.getpid(),))
        return self._pool

    def call(self, fn: Callable[..., Any], *args: Any) -> Future:
        """``fn(*args)`` on one of the pool's workers (``collect.stack_executor`` trains its stacks there)."""
        return self._open().submit(fn, *args)

    def submit(self, planned: PlannedRun, target: SweepTarget, retries: int, attempt: int) -> Future:
        stacked = self.stacked.get(planned.config_hash)
        try:
            return self._open().submit(run_attempt, planned, target, retries, None, stacked)
        except BrokenProcessPool:  # a worker died earlier: start a fresh pool
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            return self._open().submit(run_attempt, planned, target, retries, None, stacked)

    def abort(self, futures: Sequence[Any]) -> bool:
        if self._pool is None:
            return False
        pool, self._pool = self._pool, None
        _kill_workers(pool)  # first: shutdown() drops the pool's handles on its processes
        pool.shutdown(wait=False, cancel_futures=True)
        return True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    kill = getattr(pool, "kill_workers", None)  # public from Python 3.14
    if kill is not None:
        kill()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):  # no public handle before 3.14
        with contextlib.suppress(Exception):
            process.kill()


def local_executor(workers: int | None = None, retries: int = DEFAULT_RETRIES) -> Executor:
    """Up to ``workers`` runs at a time in spawned processes (default: the usable cores); 1 runs in this process."""
    n = workers or usable_cores()

    def execute(runs: Sequence[PlannedRun], target: SweepTarget) -> Iterator[RunOutcome]:
        if n == 1:
            return drive(runs, target, InlinePool(), retries)
        # per-run training bars from several processes would interleave; the driver's sweep bar stays
        return drive(runs, replace(target, progress=False), ProcessPool(min(n, max(1, len(runs)))), retries)

    return execute


# ---------------------------------------------------------------- Dask


class DaskExecutor:
    """Submits every run of the sweep to a Dask cluster: ``scheduler`` (``tcp://HOST:8786``), else a ``LocalCluster``
    of ``workers`` single-threaded worker processes started for this sweep. Use as a context manager::

        with DaskExecutor("tcp://10.0.0.5:8786") as executor:
            run_sweep(runs, sweep=..., tracking_uri="http://10.0.0.5:5000", executor=executor)
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None, retries: int = DEFAULT_RETRIES, connect_timeout: float = 20.0):
        self.scheduler, self.workers, self.retries, self.connect_timeout = scheduler, workers, retries, connect_timeout
        self.client = None
        self.cluster = None

    def __enter__(self) -> "DaskExecutor":
        import dask
        from distributed import Client, LocalCluster

        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout=self.connect_timeout)
            except (OSError, TimeoutError) as exc:
                raise ExecutorError(
                    f"--scheduler {self.scheduler}: cannot reach a Dask scheduler there ({type(exc).__name__}: {exc}); "
                    "start one with `dask scheduler` and workers with `dask worker tcp://HOST:8786 --nthreads 1`, "
                    "or leave out --scheduler to start a LocalCluster"
                ) from None
        else:
            # the scheduler's own re-runs after a worker death follow --retries too
            with dask.config.set({"distributed.scheduler.allowed-failures": self.retries}):
                self.cluster = LocalCluster(n_workers=self.workers or usable_cores(), threads_per_worker=1,
                                            processes=True, dashboard_address=None)
            self.client = Client(self.cluster)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
            self.cluster = None

    def host_slots(self) -> dict[str, int]:
        """Worker threads per host, i.e. runs that can train at once on each machine."""
        slots: Counter = Counter()
        for address, info in self.client.scheduler_info(n_workers=-1)["workers"].items():
            slots[urlparse(address).hostname or ""] += int(info.get("nthreads", 1))
        return dict(slots)

    def __call__(self, runs: Sequence[PlannedRun], target: SweepTarget) -> Iterator[RunOutcome]:
        if self.client is None:
            raise ExecutorError("DaskExecutor is not connected: use it as `with DaskExecutor(...) as executor:`")
        slots = self.host_slots()
        threaded = sorted(a for a, w in self.client.scheduler_info(n_workers=-1)["workers"].items() if int(w.get("nthreads", 1)) > 1)
        if threaded:
            _note(f"warning: Dask workers {', '.join(threaded[:3])}{' ...' if len(threaded) > 3 else ''} have several threads, so "
                  "several runs share one process and torch's global random state (dropout): results can then depend on "
                  "which runs met on a worker; start workers with `dask worker ... --nthreads 1 --nworkers N`")
        uri = absolute_store_uri(target.tracking_uri)
        remote = sorted(h for h in slots if not _is_this_machine(h))
        if tracking.sqlite_path(uri) is not None and remote:
            _note(f"warning: the store {uri} is a SQLite file on this machine, but Dask workers run on {', '.join(remote)}; "
                  "SQLite is for one machine: start `mlflow server` and pass --tracking-uri http://HOST:5000")
        target = replace(target, tracking_uri=uri, progress=False, torch_threads=None)
        return drive(runs, target, _DaskPool(self, slots), self.retries)


class _DaskPool:
    max_in_flight = None  # the scheduler queues; an adaptive cluster scales on the queue length

    def __init__(self, executor: DaskExecutor, host_slots: Mapping[str, int]):
        self.executor, self.host_slots = executor, dict(host_slots)

    def submit(self, planned: PlannedRun, target: SweepTarget, retries: int, attempt: int) -> Any:
        key = f"flatlas-run-{planned.config_hash[:16]}-{attempt}-{uuid.uuid4().hex[:8]}"
        return self.executor.client.submit(run_attempt, planned, target, retries, self.host_slots, key=key, pure=False)

    def abort(self, futures: Sequence[Any]) -> bool:
        with contextlib.suppress(Exception):
            self.executor.client.cancel(list(futures))
        if self.executor.cluster is None:
            return False  # a shared cluster: runs already training finish and are logged as complete runs
        self.executor.close()  # our LocalCluster: stopping it stops the runs in flight
        return True

    def close(self) -> None:
        pass  # the DaskExecutor's context closes the client (and the LocalCluster it started)


def absolute_store_uri(uri: str) -> str:
    """A relative ``sqlite:///`` path made absolute, so workers with another working directory open the same file."""
    path = tracking.sqlite_path(uri)
    if path is None or path.is_absolute():
        return uri
    return f"sqlite:///{path.resolve()}"


def _is_this_machine(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    with contextlib.suppress(OSError):
        return host in {socket.gethostname(), socket.getfqdn(), socket.gethostbyname(socket.gethostname())}
    return False


# ---------------------------------------------------------------- CLI entry


@contextlib.contextmanager
def open_executor(kind: str = "local", *, workers: int | None = None, scheduler: str | None = None,
                  retries: int = DEFAULT_RETRIES) -> Iterator[tuple[Executor, int | None]]:
    """The executor for ``--executor/--workers/--scheduler/--retries`` and the torch threads each run should use."""
    if workers is not None and workers < 1:
        raise ExecutorError(f"--workers {workers}: give a positive number of parallel runs (default: {usable_cores()} cores)")
    if retries < 0:
        raise ExecutorError(f"--retries {retries}: give 0 (no retries) or more")
    if kind == "local":
        if scheduler:
            raise ExecutorError("--scheduler needs --executor dask (the local executor runs on this machine only)")
        n = local_workers(workers)
        yield local_executor(n, retries), threads_per_run(usable_cores(), n)
    elif kind == "dask":
        if scheduler and workers is not None:
            raise ExecutorError("--workers starts that many LocalCluster workers; with --scheduler the cluster's own workers "
                                "run the sweep (add some with `dask worker ADDRESS --nworkers N --nthreads 1`): drop --workers")
        with DaskExecutor(scheduler, workers, retries) as executor:
            yield executor, None  # sized on each worker from the cores of its host
    else:
        raise ExecutorError(f"--executor {kind!r}: choose local or dask")
