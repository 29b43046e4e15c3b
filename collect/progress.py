"""Progress of a sweep for logs: one line per finished or failed run, for when stderr is not a terminal (tqdm,
which ``collect.runner`` uses on a terminal, draws nothing into a pipe or a file: ``python -m collect 2>&1 | tee log``)."""

from __future__ import annotations

import sys
from typing import Any, Mapping, Protocol


class Outcome(Protocol):
    """What a progress line reads of a run's outcome (``collect.runner.RunOutcome`` has it)."""

    status: str
    seconds: float
    metrics: Mapping[str, float]
    reason: str


class Planned(Protocol):
    """What a progress line reads of a planned run (``collect.sweep.PlannedRun`` has it)."""

    intervention: str
    config: Any


def progress_line(done: int, total: int, sweep: str, number: int, planned: Planned, outcome: Outcome) -> str:
    """One line per finished run, for logs: ``[12/32] done quick #11 (batch_size=500, seed=0) 3.1 s, test_acc 0.861``,
    or ``[13/32] FAILED quick #12 (...) 0.4 s: <first line of the reason>``; ``#`` numbers as ``--dry-run`` does."""
    head = f"[{done}/{total}] {'done' if outcome.status == 'FINISHED' else outcome.status} {sweep} #{number} ({planned.intervention}, seed={planned.config.seed}) {outcome.seconds:.1f} s"
    if outcome.status == "FINISHED":
        acc = outcome.metrics.get("gen.test_acc")
        return head + (f", test_acc {acc:.3f}" if acc is not None else "")
    return head + f": {outcome.reason.splitlines()[0] if outcome.reason else 'no reason recorded'}"


def print_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
