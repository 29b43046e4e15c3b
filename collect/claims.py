"""At most one training per configuration, whatever runs at once: a claim protocol on top of the MLflow store.

A *claim* on a configuration is its RUNNING child run. Several ``python -m collect`` invocations of one sweep (one
machine or several, SQLite or a tracking server) each create their own claim before training; Lamport's bakery
algorithm (Lamport 1974, "A new solution of Dijkstra's concurrent programming problem") then lets exactly one of the
claims that overlap in time win, using nothing but reads and writes of run tags, which every MLflow store gives:

1. The claimant has created its run (tags: ``config_hash``, owner ``worker`` = host:pid, ``claim.heartbeat``), with
   no ticket yet ("choosing").
2. It reads the live claims of the hash and sets ``claim.ticket`` = 1 + the largest ticket among them.
3. It re-reads until no other live claim is still choosing; it then loses to any live claim with a smaller
   ``(ticket, run_id)``, and to any FINISHED run of the hash. Otherwise it wins and trains.

A claim that starts after a winner's step 3 sees the winner's ticket in its step 2 and takes a larger one, so it
loses; two claims that overlap see each other's tickets and order them the same way. No clock is compared between
machines for this decision, so clock skew cannot make two claims win.

Liveness: the owner refreshes ``claim.heartbeat`` (its unix time) every ``HEARTBEAT_S`` seconds. A RUNNING run is
*dead* when its heartbeat is missing or older than ``STALE_S``, or when its owner is on this host and its process
is gone; a dead claim is taken over (marked FAILED with the reason) and ignored. Heartbeat ages compare the
owner's clock with the reader's, so machines' clocks must agree to well within ``STALE_S`` (NTP does).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mlflow import MlflowClient

from collect.tags import TAG_HASH, TAG_KIND

TAG_OWNER = "worker"  # host:pid of the process that runs (and heartbeats) the run
TAG_HEARTBEAT = "claim.heartbeat"  # unix seconds of the owner's last sign of life
TAG_TICKET = "claim.ticket"  # bakery ticket; absent while the claimant is choosing
HEARTBEAT_S = 10.0
STALE_S = 90.0
POLL_S = 0.2
TAKEN_OVER = "owner gone: no heartbeat for {age:.0f} s or its process ended; taken over by {by}"


def owner_tags(now: float | None = None) -> dict[str, str]:
    """Tags that make this process the owner of a run it creates (for liveness checks by other invocations)."""
    return {TAG_OWNER: f"{socket.gethostname()}:{os.getpid()}", TAG_HEARTBEAT: f"{time.time() if now is None else now:.3f}"}


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie (killed but not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): trust kill(0)
    return state not in ("Z", "X")


def heartbeat_age(run, now: float | None = None) -> float:
    """Seconds since the run's owner last refreshed its heartbeat (infinite when it never did)."""
    beat = run.data.tags.get(TAG_HEARTBEAT)
    try:
        return (time.time() if now is None else now) - float(beat)
    except (TypeError, ValueError):
        return float("inf")


def is_alive(run, now: float | None = None, stale_s: float = STALE_S) -> bool:
    """A RUNNING run whose owner still shows signs of life (see the module docstring)."""
    if run.info.status != "RUNNING" or heartbeat_age(run, now) > stale_s:
        return False
    host, _, pid = run.data.tags.get(TAG_OWNER, "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return process_alive(int(pid))
    return True


class Heartbeat:
    """Refreshes ``claim.heartbeat`` of ``run_id`` every ``every`` seconds from a daemon thread, while in ``with``.

    A failed refresh (a locked database, a server hiccup) is skipped: a claim goes stale only after ``STALE_S``
    without any successful one.
    """

    def __init__(self, client: MlflowClient, run_id: str, every: float = HEARTBEAT_S):
        self.client, self.run_id, self.every = client, run_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id[:8]}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.client.set_tag(self.run_id, TAG_HEARTBEAT, f"{time.time():.3f}")
            except Exception:  # noqa: BLE001 - see the class docstring
                pass

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass(frozen=True)
class Claim:
    won: bool
    holder: str | None = None  # the run that has the configuration when this claim lost
    reason: str = ""


def runs_of_hash(client: MlflowClient, experiment_id: str, config_hash: str) -> list:
    """Every configuration run of ``config_hash`` in the experiment (any status, not deleted)."""
    query = f"tags.`{TAG_KIND}` = 'config' and tags.`{TAG_HASH}` = '{config_hash}'"
    return list(client.search_runs([experiment_id], query, max_results=1000))


def take_over_dead(client: MlflowClient, runs: Iterable, by: str, now: float | None = None) -> list[str]:
    """Mark RUNNING runs whose owner is gone FAILED with the reason; returns their ids."""
    closed = []
    for run in runs:
        if run.info.status == "RUNNING" and not is_alive(run, now):
            age = heartbeat_age(run, now)
            client.set_tag(run.info.run_id, "failure_reason", TAKEN_OVER.format(age=min(age, 1e9), by=by))
            client.set_terminated(run.info.run_id, "FAILED")
            closed.append(run.info.run_id)
    return closed


def _ticket(run) -> int | None:
    value = run.data.tags.get(TAG_TICKET)
    return int(value) if value is not None and value.isdigit() else None


def _others(client: MlflowClient, experiment_id: str, config_hash: str, run_id: str) -> tuple[list, list]:
    """(FINISHED runs, live claims other than ``run_id``) of the hash; dead claims are taken over on the way."""
    runs = [r for r in runs_of_hash(client, experiment_id, config_hash) if r.info.run_id != run_id]
    take_over_dead(client, runs, by=run_id)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    live = [r for r in runs if r.info.status == "RUNNING" and is_alive(r)]
    return finished, live


def claim(client: MlflowClient, experiment_id: str, config_hash: str, run_id: str, wait_s: float = STALE_S) -> Claim:
    """Decide whether the RUNNING run ``run_id`` (created with ``owner_tags``) may train ``config_hash``.

    A claimant still choosing after ``wait_s`` seconds while alive makes this claim lose: losing never duplicates a
    training, and the configuration is then trained by that claimant or by the next invocation.
    """
    finished, live = _others(client, experiment_id, config_hash, run_id)
    if finished:
        return Claim(False, finished[0].info.run_id, "already FINISHED")
    ticket = 1 + max((_ticket(r) or 0 for r in live), default=0)
    client.set_tag(run_id, TAG_TICKET, str(ticket))
    deadline = time.monotonic() + wait_s
    while True:
        finished, live = _others(client, experiment_id, config_hash, run_id)
        if finished:
            return Claim(False, finished[0].info.run_id, "already FINISHED")
        choosing = [r for r in live if _ticket(r) is None]
        if not choosing:
            break
        if time.monotonic() > deadline:
            return Claim(False, choosing[0].info.run_id, f"another claimant was still choosing after {wait_s:.0f} s")
        time.sleep(POLL_S)
    ahead = sorted((_ticket(r), r.info.run_id) for r in live if (_ticket(r), r.info.run_id) < (ticket, run_id))
    if ahead:
        return Claim(False, ahead[0][1], "claimed earlier by another invocation")
    return Claim(True)


def release_lost(client: MlflowClient, run_id: str, lost: Claim) -> None:
    """A lost claim leaves no trace in the ledger: tagged with the holder, then deleted (``mlflow gc`` purges it)."""
    client.set_tag(run_id, "claim.lost_to", f"{lost.holder}: {lost.reason}")
    client.set_terminated(run_id, "KILLED")
    client.delete_run(run_id)
