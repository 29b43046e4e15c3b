"""The training loop: minibatches, stopping criteria, curves, divergence detection and iterate averaging.

Stopping follows the papers: a fixed number of steps (paper 000 section 4), a train-accuracy threshold (paper 004:
99 %; paper 002: 100 %), a train cross-entropy threshold, and overtraining for N more epochs after a threshold
(paper 002 section 6). The first criterion met stops the run; which one is recorded.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from collect.config import RunConfig
from collect.losses import LossFn


class Diverged(RuntimeError):
    """The training loss became NaN or infinite; the run is recorded as failed with this reason."""


@dataclass(frozen=True)
class TensorData:
    """A dataset's arrays as tensors on the training device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    is_attack: torch.Tensor


@dataclass
class TrainResult:
    model: nn.Module
    init_state: dict[str, torch.Tensor]
    steps: int
    epochs: float
    stop_reason: str  # "max_steps", "max_epochs", "train_acc", "train_loss"
    converged: bool  # a train-accuracy / train-loss threshold was reached
    converged_step: int | None
    curves: list[dict[str, float]]
    seconds: float
    next_iterate: Callable[[], Mapping[str, torch.Tensor]] | None = field(default=None, repr=False)


class BatchSampler:
    """Epoch-wise shuffled minibatches from a seeded generator (full batch when batch_size >= n)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
        self.x, self.y = x, y
        self.n = x.shape[0]
        self.batch_size = min(batch_size, self.n)
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(self.n, generator=self.generator)
        self.pos = 0
        self.batches_drawn = 0

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos >= self.n:
            self.order = torch.randperm(self.n, generator=self.generator)
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.batch_size].to(self.x.device)
        self.pos += self.batch_size
        self.batches_drawn += 1
        return self.x[idx], self.y[idx]


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, batch_size: int = 4096) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` (in eval mode) on (x, y)."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            logits = model(x[i : i + batch_size])
            total_loss += float(loss_fn(logits, y[i : i + batch_size])) * logits.shape[0]
            correct += int((logits.argmax(1) == y[i : i + batch_size]).sum())
    model.train(was_training)
    return total_loss / x.shape[0], correct / x.shape[0]


def train(
    config: RunConfig,
    model: nn.Module,
    data: TensorData,
    loss_fn: LossFn,
    build_step: Callable[[nn.Module], Callable],
    on_eval: Callable[[nn.Module, int], Mapping[str, float]] | None = None,
    progress: bool = True,
    transform_at: tuple[int, Callable[[nn.Module], nn.Module]] | None = None,
) -> TrainResult:
    """Train ``model`` in place until a stopping criterion of ``config.stop`` is met.

    ``build_step(model)`` returns the optimizer step (collect.optim.build_optimizer); ``on_eval(model, step)`` may
    return extra curve values (measures along training). ``transform_at = (epoch, fn)`` replaces the weights by those
    of ``fn(model)`` in place at the end of that epoch and training continues with the same optimizer state (the
    mid-training alpha scaling of paper 002 figure 5). Raises ``Diverged`` on a non-finite loss.
    """
    started = time.perf_counter()
    stop, optim = config.stop, config.optim
    init_state = {k: v.detach().clone() for k, v in model.named_parameters()}
    batch_size = data.x_train.shape[0] if optim.optimizer == "gd" else optim.batch_size
    sampler = BatchSampler(data.x_train, data.y_train, batch_size, seed=config.seed)
    spe = sampler.steps_per_epoch
    limits = [s for s in (stop.max_steps, stop.max_epochs * spe if stop.max_epochs else None) if s is not None]
    budget = min(limits)
    eval_every = stop.eval_every or spe
    step_fn = build_step(model)
    averager = torch.optim.swa_utils.AveragedModel(model) if optim.swa else None
    swa_from = int(optim.swa_start * budget)

    curves: list[dict[str, float]] = []
    step, stop_reason, converged_step, deadline = 0, "", None, budget
    bar = tqdm(total=budget, desc="train", unit="step", leave=False, disable=not progress or None)
    model.train()
    try:
        while True:
            loss = step_fn(sampler)
            step += 1
            bar.update(1)
            if not math.isfinite(float(loss)):
                raise Diverged(f"training loss became {float(loss)} at step {step} (lower optim.lr or check the data)")
            if averager is not None and step >= swa_from and step % spe == 0:
                averager.update_parameters(model)
            if transform_at is not None and step == transform_at[0] * spe:
                with torch.no_grad():
                    model.load_state_dict(transform_at[1](model).state_dict())
                row = _eval_row(model, data, loss_fn, step, spe)
                curves.append({**row, **(on_eval(model, step) if on_eval else {}), "transformed": 1.0})
                model.train()
            if step % eval_every == 0 or step >= deadline:
                row = _eval_row(model, data, loss_fn, step, spe)
                if not math.isfinite(row["train_loss"]):
                    raise Diverged(f"full training loss became {row['train_loss']} at step {step} (lower optim.lr)")
                if on_eval is not None:
                    row.update(on_eval(model, step))
                    model.train()
                curves.append(row)
                bar.set_postfix(loss=f"{row['train_loss']:.3g}", acc=f"{row['train_acc']:.3f}")
                if converged_step is None and _threshold_met(row, stop):
                    converged_step = step
                    stop_reason = "train_acc" if stop.train_acc is not None and row["train_acc"] >= stop.train_acc else "train_loss"
                    deadline = min(budget, step + stop.extra_epochs * spe) if stop.extra_epochs else step
            if step >= deadline:
                if converged_step is None:
                    stop_reason = "max_steps" if stop.max_steps is not None and step >= stop.max_steps else "max_epochs"
                break
    finally:
        bar.close()

    if averager is not None and averager.n_averaged.item() > 0:
        _load_average(model, averager, sampler)
        curves.append({**_eval_row(model, data, loss_fn, step, spe), "swa": 1.0})
    elif not curves or curves[-1]["step"] != step:
        curves.append(_eval_row(model, data, loss_fn, step, spe))
    model.eval()
    return TrainResult(
        model=model,
        init_state=init_state,
        steps=step,
        epochs=step / spe,
        stop_reason=stop_reason,
        converged=converged_step is not None,
        converged_step=converged_step,
        curves=curves,
        seconds=time.perf_counter() - started,
        next_iterate=_one_more_step(model, step_fn, sampler),
    )


def _eval_row(model: nn.Module, data: TensorData, loss_fn: LossFn, step: int, spe: int) -> dict[str, float]:
    train_loss, train_acc = evaluate(model, data.x_train, data.y_train, loss_fn)
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test, loss_fn)
    return {"step": step, "epoch": step / spe, "train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc}


def _threshold_met(row: Mapping[str, float], stop) -> bool:
    if stop.train_acc is not None and row["train_acc"] >= stop.train_acc:
        return True
    return stop.train_loss is not None and row["train_loss"] <= stop.train_loss


def _load_average(model: nn.Module, averager: torch.optim.swa_utils.AveragedModel, sampler: BatchSampler) -> None:
    """Copy the averaged iterate into ``model`` and recompute batch-norm statistics for it."""
    with torch.no_grad():
        for p, q in zip(model.parameters(), averager.module.parameters()):
            p.copy_(q)
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        loader = [(sampler.x[i : i + 256],) for i in range(0, sampler.n, 256)]
        torch.optim.swa_utils.update_bn(loader, model)


def _one_more_step(model: nn.Module, step_fn: Callable, sampler: BatchSampler) -> Callable[[], Mapping[str, torch.Tensor]]:
    """A closure giving the parameters after one more optimizer step from the final iterate, on copies."""
    frozen = copy.deepcopy((model, step_fn, sampler))

    def next_iterate() -> Mapping[str, torch.Tensor]:
        m, s, b = copy.deepcopy(frozen)
        m.train()
        s(b)
        return {k: v.detach() for k, v in m.named_parameters()}

    return next_iterate
