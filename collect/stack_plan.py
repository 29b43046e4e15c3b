"""Which runs of a sweep can be trained together as one stack (``collect.train_stacked``), and in which groups.

Configurations that share architecture, data sizes, batch size, optimizer, loss and stopping rule but differ in
seed, learning rate, weight decay, momentum (non-zero values; runs without momentum form their own stacks), dropout
rate, initialisation scale or data seed share a stack (``shape_key``). What is not stacked (it runs one at a time,
with a message): architectures other than ``fcn`` and ``fcn_bn`` (batch norm is stacked), optimizers other than
sgd / gd / adam, SWA, a mid-training transform, curve measures, and groups of one run (``unsupported``).
"""

from __future__ import annotations

import json
from typing import Sequence

from collect.config import RunConfig
from collect.sweep import PlannedRun

SUPPORTED_ARCHS = ("fcn", "fcn_bn")  # with or without batch norm
SUPPORTED_OPTIMIZERS = ("sgd", "gd", "adam")
SUPPORTED_ACTIVATIONS = ("relu", "tanh")
# fields that may differ inside a stack; everything else that shapes training must be equal
PER_RUN_FIELDS = {
    "seed": (),
    "optim": ("lr", "weight_decay", "momentum"),
    "model": ("dropout", "init_sigma_w", "init_sigma_b"),
    "data": ("data_seed",),
}
AFTER_TRAINING = ("measures", "save_weights", "transform")  # used after training only (transform: post-training)
MAX_STACK = 64


def unsupported(cfg: RunConfig) -> str | None:
    """Why ``cfg`` cannot be trained stacked, or None."""
    if cfg.model.arch not in SUPPORTED_ARCHS:
        return f"model.arch = {cfg.model.arch!r} (stacked training supports {', '.join(SUPPORTED_ARCHS)})"
    if cfg.model.activation not in SUPPORTED_ACTIVATIONS:
        return f"model.activation = {cfg.model.activation!r}"
    if cfg.optim.optimizer not in SUPPORTED_OPTIMIZERS:
        return f"optim.optimizer = {cfg.optim.optimizer!r} (stacked training supports {', '.join(SUPPORTED_OPTIMIZERS)})"
    if cfg.optim.swa:
        return "optim.swa = true"
    if cfg.transform.at_epoch:
        return "transform.at_epoch is set (a mid-training transform)"
    if cfg.curve_measures:
        return "curve_measures are set (measures along training)"
    return None


def shape_key(cfg: RunConfig) -> str:
    """Runs with equal keys can share a stack: the resolved config without the per-run fields."""
    d = cfg.to_dict()
    # momentum or none: the stacked SGD step takes one of two paths (collect.stack_model.StackedOptimizer.sgd_update),
    # so a run's arithmetic, and hence its result to the last bit, never depends on the other runs of its stack
    d["optim"]["with_momentum"] = cfg.optim.momentum != 0
    for section, names in PER_RUN_FIELDS.items():
        if not names:
            d.pop(section, None)
        for name in names:
            d.get(section, {}).pop(name, None)
    for name in AFTER_TRAINING:
        d.pop(name, None)
    return json.dumps(d, sort_keys=True, default=str)


def plan_stacks(runs: Sequence[PlannedRun], max_stack: int = MAX_STACK) -> tuple[list[list[PlannedRun]], list[PlannedRun], list[str]]:
    """(stacks of ≥ 2 runs, runs to train one at a time, one message per reason a run is not stacked)."""
    groups: dict[str, list[PlannedRun]] = {}
    alone: list[PlannedRun] = []
    reasons: dict[str, int] = {}
    for planned in runs:
        why = unsupported(planned.config)
        if why:
            alone.append(planned)
            reasons[why] = reasons.get(why, 0) + 1
            continue
        groups.setdefault(shape_key(planned.config), []).append(planned)
    stacks: list[list[PlannedRun]] = []
    for members in groups.values():
        if len(members) == 1:
            alone.extend(members)
            reasons["no other run shares its shape"] = reasons.get("no other run shares its shape", 0) + 1
            continue
        stacks.extend(members[i : i + max_stack] for i in range(0, len(members), max_stack))
    notes = [f"--stack: {n} run(s) trained one at a time: {why}" for why, n in reasons.items()]
    return stacks, alone, notes


def spread(stacks: list[list[PlannedRun]], workers: int, min_size: int = 4) -> list[list[PlannedRun]]:
    """Split the largest stacks in halves until there are at least ``workers`` of them (none smaller than
    ``min_size`` // 2), so that ``workers`` processes can train stacks at the same time."""
    out = [list(s) for s in stacks]
    while len(out) < workers:
        largest = max(range(len(out)), key=lambda i: len(out[i]), default=None)
        if largest is None or len(out[largest]) < min_size:
            break
        big = out.pop(largest)
        out += [big[: len(big) // 2], big[len(big) // 2 :]]
    return out
