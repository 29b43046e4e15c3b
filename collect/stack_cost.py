"""``--stack auto``: which stacks of a sweep (``collect.stack_plan``) are worth training together, by a cost model.

A training step of one run costs a fixed overhead t_o (Python, autograd and optimizer bookkeeping, kernel launches)
plus its arithmetic F at a rate r; a stack of R runs pays the overhead once for all R runs' arithmetic:

    F        = 2 · B · (3 · Σ_i d_i d_{i+1} − d_0 d_1)        (FLOP per run and step; d = input, hidden..., classes;
                                                              B = batch size, the training set for "gd")
    x        = F / F_o,   F_o = t_o · r                       (arithmetic a step could do in its overhead time)
    one run  : t_o · (1 + x) per step;   stack of R : t_o · (1 + R · x) per step of all R runs
    speed-up s(F, R) = R · (1 + x) / (1 + R · x);   time saved by a stack ≈ t_o · S · (R − 1)

with S the runs' step budget (``collect.stop_rule.step_budget``; a target sweep stops earlier, so S is an upper
bound). A stack is trained together when R ≥ ``min_runs``, s ≥ ``min_speedup`` (stacked training has costs the
model leaves out: a stack steps until its slowest member stops, weights travel between processes) and the time
saved is at least ``fixed_s`` (a worker pool started for the stack's wave). Anything ``stack_plan.unsupported``
names is never stacked.

The constants come from the figures in docs/performance.md ("Stacked training", "Training speed"):

- F_o = 0.86 MFLOP: a 16-run stack of MNIST-1D MLPs (40-64-10, batch 32: F = 0.45 MFLOP) trained s = 2.6× faster
  than one run at a time (1.07 → 0.41 s per run); solving s(F, 16) = 2.6 gives x = 0.52. The model then predicts
  s = 1.05 for the quick model (784-128-128-10, batch 32: F = 16.2 MFLOP), where 0.99× was measured.
- t_o = 0.22 ms: one quick-model run takes 2.06 s CPU for 480 steps (4.3 ms a step = t_o · (1 + 18.8)).
- fixed_s = 3 s: starting a worker pool (fork server, imports), measured at about 3 s.

The model is calibrated on the CPU; on a GPU the overhead share is larger, so it errs on the side of not stacking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from collect import footprint
from collect.config import RunConfig
from collect.stack_plan import plan_stacks, unsupported
from collect.stop_rule import step_budget
from collect.sweep import PlannedRun

MODES = ("auto", "on", "off")
COMPUTE_BOUND = "arithmetic dominates their steps"


@dataclass(frozen=True)
class StackCostModel:
    """Constants of the cost model (module docstring): overhead FLOP F_o, overhead seconds t_o, thresholds."""

    overhead_flop: float = 0.86e6  # F_o
    step_overhead_s: float = 2.2e-4  # t_o
    fixed_s: float = 3.0
    min_runs: int = 4
    min_speedup: float = 1.5

    def speedup(self, flop: float, runs: int) -> float:
        """s(F, R) = R · (1 + x) / (1 + R · x), x = F / F_o: training time one at a time over stacked."""
        x = flop / self.overhead_flop
        return runs * (1 + x) / (1 + runs * x)

    def saved_seconds(self, steps: int, runs: int) -> float:
        """t_o · S · (R − 1): the per-step overheads a stack of R runs does not pay, over S steps."""
        return self.step_overhead_s * steps * (runs - 1)


def step_flop(cfg: RunConfig) -> float | None:
    """F = 2 · B · (3 · Σ d_i d_{i+1} − d_0 d_1) of one training step of ``cfg`` (FCNs); None when the input size
    of its dataset is not known before loading it."""
    shape = footprint.input_shape(cfg.data)
    if shape is None:
        return None
    classes = 2 if cfg.data.binary is not None else 10
    depth = 3 if cfg.model.arch == "fcn_bn" else cfg.model.depth
    dims = [math.prod(shape)] + [cfg.model.width] * depth + [classes]
    n_fit = cfg.data.n_train + cfg.data.attack_size
    batch = n_fit if cfg.optim.optimizer == "gd" else min(cfg.optim.batch_size, n_fit)
    products = [a * b for a, b in zip(dims, dims[1:])]
    return 2.0 * batch * (3 * sum(products) - products[0])


def steps_of(cfg: RunConfig) -> int:
    """S: the run's step budget (min of max_steps and max_epochs × ⌈n_fit / B⌉)."""
    n_fit = cfg.data.n_train + cfg.data.attack_size
    batch = n_fit if cfg.optim.optimizer == "gd" else min(cfg.optim.batch_size, n_fit)
    return step_budget(cfg.stop, math.ceil(n_fit / batch))


def why_not(members: Sequence[PlannedRun], model: StackCostModel = StackCostModel()) -> str | None:
    """Why the stack ``members`` does not pay (a reason in words, with its figures), or None when it does."""
    found = assess(members, model)
    return None if found is None else f"{found[0]} ({found[1]})"


def assess(members: Sequence[PlannedRun], model: StackCostModel = StackCostModel()) -> tuple[str, str] | None:
    """(reason, its figures) when the stack ``members`` does not pay, else None (the rules of the module docstring)."""
    cfg, runs = members[0].config, len(members)
    if runs < model.min_runs:
        return f"groups of fewer than {model.min_runs} same-shape runs", f"{runs} runs"
    flop = step_flop(cfg)
    if flop is None:
        return "the input size of their dataset is not known before loading it", f"data.dataset = {cfg.data.dataset!r}"
    speedup = model.speedup(flop, runs)
    if speedup < model.min_speedup:
        return (COMPUTE_BOUND,
                f"{flop / 1e6:.3g} MFLOP a step: predicted stacked speed-up {speedup:.2f}x < {model.min_speedup:g}x")
    saved = model.saved_seconds(steps_of(cfg), runs)
    if saved < model.fixed_s:
        return "too little training to pay a stack's start-up", f"{saved:.2g} s saved < {model.fixed_s:g} s"
    return None


@dataclass(frozen=True)
class StackChoice:
    """What ``--stack`` does in one invocation: the stacks to train together and the runs to train one at a time."""

    mode: str
    stacks: tuple[tuple[PlannedRun, ...], ...]
    alone: tuple[PlannedRun, ...]
    reasons: tuple[tuple[str, int], ...]  # (reason, runs) for the runs trained one at a time

    @property
    def stacked(self) -> bool:
        return bool(self.stacks)

    def line(self) -> str:
        """E.g. "--stack auto: stacking 8 group(s) of 17-64 runs; 1863 run(s) one at a time (1863 because ...)"."""
        sizes = sorted({len(s) for s in self.stacks}) or [0]
        size = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
        head = f"stacking {len(self.stacks)} group(s) of {size} runs" if self.stacks else "stacking nothing"
        why = "; ".join(f"{n} because {reason}" for reason, n in self.reasons)
        return f"--stack {self.mode}: {head}; {len(self.alone)} run(s) one at a time" + (f" ({why})" if why else "")


def choose(runs: Sequence[PlannedRun], mode: str = "auto", executor: str = "local",
           model: StackCostModel = StackCostModel()) -> StackChoice:
    """The stacks ``--stack mode`` trains together: "on" every supported group of ≥ 2 runs (``plan_stacks``),
    "off" none, "auto" those the cost model says pay (``why_not``), and none with the Dask executor (its workers
    train runs in parallel across machines; a stack trains in this process)."""
    if mode not in MODES:
        raise ValueError(f"--stack {mode!r}: use auto, on or off")
    if mode == "off":
        return StackChoice(mode, (), tuple(runs), (("--stack off", len(runs)),) if runs else ())
    stacks, alone, _ = plan_stacks(runs)
    reasons: dict[str, int] = {}
    for planned in alone:
        why = unsupported(planned.config) or "no other run shares its shape"
        reasons[why] = reasons.get(why, 0) + 1
    keep: list[tuple[PlannedRun, ...]] = []
    bound: list[tuple[float, float]] = []  # (F, predicted speed-up) of the compute-bound stacks
    left = list(alone)
    for members in stacks:
        why = None
        if mode == "auto":
            dask = "stacks train in this process and the Dask executor spreads runs over its workers"
            found = (dask, "") if executor == "dask" else assess(members, model)
            why = None if found is None else found[0]
        if why is None:
            keep.append(tuple(members))
        else:
            left.extend(members)
            reasons[why] = reasons.get(why, 0) + len(members)
            if why == COMPUTE_BOUND:
                flop = step_flop(members[0].config) or 0.0
                bound.append((flop, model.speedup(flop, len(members))))
    if bound:  # one summary of the figures instead of one per group
        low, high = min(f for f, _ in bound) / 1e6, max(f for f, _ in bound) / 1e6
        figures = f"{low:.3g}" + (f"-{high:.3g}" if high > low else "")
        summary = (f"{COMPUTE_BOUND}: {figures} MFLOP a step, predicted stacked speed-up at most "
                   f"{max(s for _, s in bound):.2f}x < {model.min_speedup:g}x")
        reasons = {summary if k == COMPUTE_BOUND else k: n for k, n in reasons.items()}
    return StackChoice(mode, tuple(keep), tuple(left), tuple(reasons.items()))
