"""The ``--stack`` executor: trains the stackable runs of a sweep together (``collect.train_stacked``), then
measures and logs each as its own child run through the executors' pools; the other runs go one at a time."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Callable, Iterator, Sequence

import torch

from collect.executors import DEFAULT_RETRIES, InlinePool, ProcessPool, drive
from collect.runner import resolve_device
from collect.stack_plan import plan_stacks, spread
from collect.sweep import PlannedRun
from collect.train_stacked import StackedRun, train_stack, train_stack_in_worker


def stacked_executor(inner: Callable, workers: int = 1, retries: int | None = None,
                     pays: Callable[[Sequence[PlannedRun]], str | None] | None = None) -> Callable:
    """An executor (``collect.runner.Executor``) that trains stackable runs together, then measures and logs each
    with ``run_one``; the other runs go to ``inner`` (one at a time), with a message. ``pays`` (None: every
    stack) says why a planned stack is not worth stacking (``collect.stack_cost.why_not``), or None when it is;
    the runs of a stack it rejects go to ``inner``.

    With ``workers`` > 1 on the CPU, stacks are spread over the workers (``spread``) and handled in waves of
    ``workers`` stacks: each stack trains in a worker process (``collect.executors`` pools: fork server, a worker
    exits with the driver), the trained weights come back here, and the runs of the wave are measured and logged in
    the same ``workers`` processes with the pools' retry rules. With 1 worker, or on a GPU this process holds,
    everything runs in this process.
    """
    tries = DEFAULT_RETRIES if retries is None else retries

    def execute(runs: Sequence[PlannedRun], target) -> Iterator:
        stacks, alone, notes = plan_stacks(runs)
        if pays is not None:
            rejected = [m for m in stacks if pays(m) is not None]
            stacks = [m for m in stacks if pays(m) is None]
            alone = alone + [p for m in rejected for p in m]
        for note in notes:
            print(note, file=sys.stderr)
        if alone:
            yield from inner(alone, target)
        device = resolve_device(target.device)
        if target.torch_threads:  # as run_one does: more torch threads than free cores stalls every kernel
            torch.set_num_threads(target.torch_threads)
        if workers <= 1 or device.type != "cpu":
            for members in stacks:
                done = _trained(members, lambda m=members: train_stack([p.config for p in m], device, progress=target.progress))
                yield from drive(members, target, InlinePool(stacked=done), tries)
            return
        stacks = spread(stacks, workers)
        quiet = replace(target, progress=False)
        for start in range(0, len(stacks), workers):
            wave = stacks[start : start + workers]
            pool = ProcessPool(workers)
            trained = [pool.call(train_stack_in_worker, [p.config for p in m], target.torch_threads) for m in wave]
            pool.stacked = {}
            for members, future in zip(wave, trained):
                pool.stacked.update(_trained(members, future.result))
            yield from drive([p for m in wave for p in m], quiet, pool, tries)

    return execute


def _trained(members: Sequence[PlannedRun], result: Callable[[], list[StackedRun]]) -> dict[str, StackedRun]:
    """Config hash -> stacked result; when training the stack raised (or its worker died), an empty mapping and a
    message: its runs are then trained one at a time by the pool (``run_one``), so a failed stack loses no run."""
    try:
        return {p.config_hash: r for p, r in zip(members, result())}
    except Exception as exc:  # noqa: BLE001 - any failure of the stack falls back to one-at-a-time training
        print(f"--stack: training a stack of {len(members)} runs failed ({type(exc).__name__}: {exc}); "
              "training them one at a time instead", file=sys.stderr)
        return {}
