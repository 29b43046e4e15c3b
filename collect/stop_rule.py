"""The stop rule every training strategy applies (one run at a time in ``collect.train``, stacked in
``collect.train_stacked``): step budget, target, overtraining deadline, stop reason and divergence.

With ``spe`` steps per epoch and the ``[stop]`` fields of the spec:

- budget B = min(max_steps, max_epochs · spe) over the limits the spec sets (a safety cap for a target sweep, the
  comparison point of a budget sweep);
- an evaluation (full train and test loss and accuracy, one curve point) happens at step t when
  t ≡ 0 (mod eval_every) or t = deadline; eval_every defaults to spe (once per epoch);
- the target is met at an evaluation when train_acc ≥ stop.train_acc or train_loss ≤ stop.train_loss;
  t* = the first evaluated step at which it is met (``target_step``, logged as ``train.target_step``);
- deadline = B until t*, then min(B, t* + extra_epochs · spe) (overtraining, paper 002 section 6);
- training stops at step t = deadline; stop_reason = the target met ("train_acc" is named first when both are),
  else "max_steps" when t ≥ max_steps, else "max_epochs";
- divergence: a non-finite minibatch loss at any step (accumulated on the device, read at each evaluation, so no
  step waits for the host) or a non-finite full training loss at an evaluation ends the run as failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from collect.config import StopConfig


class Diverged(RuntimeError):
    """The training loss became NaN or infinite; the run is recorded as failed with this reason."""


def step_budget(stop: StopConfig, steps_per_epoch: int) -> int:
    """B = min(max_steps, max_epochs · steps_per_epoch) over the limits ``stop`` sets."""
    limits = [s for s in (stop.max_steps, stop.max_epochs * steps_per_epoch if stop.max_epochs else None) if s is not None]
    if not limits:
        raise ValueError("stop: set max_steps or max_epochs (or both) so training is bounded")
    return min(limits)


def target_met(row: Mapping[str, float], stop: StopConfig) -> str | None:
    """Which target an evaluation row meets ("train_acc" or "train_loss", accuracy first), or None."""
    if stop.train_acc is not None and row["train_acc"] >= stop.train_acc:
        return "train_acc"
    if stop.train_loss is not None and row["train_loss"] <= stop.train_loss:
        return "train_loss"
    return None


def minibatch_divergence(step: int) -> str:
    """The failure reason when a minibatch loss up to ``step`` was NaN or infinite."""
    return f"training loss became non-finite by step {step} (lower optim.lr or check the data)"


def full_loss_divergence(value: float, step: int) -> str | None:
    """The failure reason when the full training loss ``value`` at ``step`` is NaN or infinite, else None."""
    return None if math.isfinite(value) else f"full training loss became {value} at step {step} (lower optim.lr)"


@dataclass
class StopRule:
    """The stopping state of one run: ``eval_due(t)`` before evaluating, ``record(t, row)`` with the evaluation
    row, ``done(t)`` after each step (it fixes ``stop_reason`` when it returns True)."""

    stop: StopConfig
    steps_per_epoch: int
    budget: int = field(init=False)
    deadline: int = field(init=False)
    eval_every: int = field(init=False)
    target_step: int | None = None
    stop_reason: str = ""

    def __post_init__(self) -> None:
        self.budget = self.deadline = step_budget(self.stop, self.steps_per_epoch)
        self.eval_every = self.stop.eval_every or self.steps_per_epoch

    @property
    def reached_target(self) -> bool:
        return self.target_step is not None

    def eval_due(self, step: int) -> bool:
        return step % self.eval_every == 0 or step >= self.deadline

    def record(self, step: int, row: Mapping[str, float]) -> None:
        """Note the evaluation at ``step``; the first one meeting the target sets t* and the deadline."""
        if self.target_step is not None:
            return
        met = target_met(row, self.stop)
        if met is not None:
            self.target_step, self.stop_reason = step, met
            self.deadline = min(self.budget, step + self.stop.extra_epochs * self.steps_per_epoch)

    def done(self, step: int) -> bool:
        if step < self.deadline:
            return False
        if self.target_step is None:
            self.stop_reason = "max_steps" if self.stop.max_steps is not None and step >= self.stop.max_steps else "max_epochs"
        return True
