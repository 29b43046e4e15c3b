"""The training loop of one run: minibatches, the stop rule, curves, divergence detection and iterate averaging.

Stopping follows the papers: a fixed step budget (paper 000 section 4), a train-accuracy target (paper 004: 99 %;
paper 002: 100 %), a train cross-entropy target (Jiang et al. 2020: 0.01), and overtraining for N more epochs after
the target (paper 002 section 6). The rule (budget, deadline, stop reason, divergence) is ``collect.stop_rule``,
shared with stacked training (``collect.train_stacked``).
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
from collect.logits import predict
from collect.losses import LossFn
from collect.stop_rule import Diverged, StopRule, full_loss_divergence, minibatch_divergence

__all__ = ["BatchSampler", "Diverged", "TensorData", "TrainResult", "evaluate", "eval_row", "one_more_step", "train"]


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
    stop_reason: str  # "max_steps", "max_epochs", "train_acc", "train_loss" (collect.stop_rule)
    converged: bool  # the declared target (train_acc / train_loss) was reached
    target_step: int | None  # t*: the first evaluated step at which the target was met
    curves: list[dict[str, float]]
    seconds: float
    next_iterate: Callable[[], Mapping[str, torch.Tensor]] | None = field(default=None, repr=False)


class BatchSampler:
    """Epoch-wise shuffled minibatches from a seeded generator (full batch when batch_size >= n).

    The permutation is drawn on the CPU (the same on every device) and moved to the data's device once per epoch,
    so drawing a batch never waits for the device.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
        self.x, self.y = x, y
        self.n = x.shape[0]
        self.batch_size = min(batch_size, self.n)
        self.generator = torch.Generator().manual_seed(seed)
        self.order = self._permutation()
        self.pos = 0
        self.batches_drawn = 0

    def _permutation(self) -> torch.Tensor:
        return torch.randperm(self.n, generator=self.generator).to(self.x.device)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def next_indices(self) -> torch.Tensor:
        """The indices of the next minibatch (a new permutation at the start of each epoch)."""
        if self.pos >= self.n:
            self.order = self._permutation()
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        self.batches_drawn += 1
        return idx

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.next_indices()
        return self.x[idx], self.y[idx]

    def bound_to(self, x: torch.Tensor, y: torch.Tensor) -> "BatchSampler":
        """An independent copy at the same point of the same shuffled order, drawing from (x, y) of equal length."""
        if x.shape[0] != self.n:
            raise ValueError(f"bound_to: {x.shape[0]} points given, the sampler draws from {self.n}")
        other = copy.copy(self)
        other.x, other.y = x, y
        other.generator = torch.Generator().set_state(self.generator.get_state())
        other.order = self.order.to(x.device)
        return other


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, batch_size: int = 4096) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` (in eval mode) on (x, y); predictions by ``collect.logits.predict``."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            logits = model(x[i : i + batch_size])
            total_loss += float(loss_fn(logits, y[i : i + batch_size])) * logits.shape[0]
            correct += int((predict(logits) == y[i : i + batch_size]).sum())
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
    optim = config.optim
    init_state = {k: v.detach().clone() for k, v in model.named_parameters()}
    batch_size = data.x_train.shape[0] if optim.optimizer == "gd" else optim.batch_size
    sampler = BatchSampler(data.x_train, data.y_train, batch_size, seed=config.seed)
    spe = sampler.steps_per_epoch
    rule = StopRule(config.stop, spe)
    step_fn = build_step(model)
    averager = torch.optim.swa_utils.AveragedModel(model) if optim.swa else None
    swa_from = int(optim.swa_start * rule.budget)
    # Σ minibatch losses in float64, kept on the device and read once per evaluation, never per step: finite float32
    # losses cannot overflow it, so it is non-finite exactly when some minibatch loss was (one in-place add a step)
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.x_train.device)

    curves: list[dict[str, float]] = []
    step = 0
    bar = tqdm(total=rule.budget, desc="train", unit="step", leave=False, disable=not progress or None)
    model.train()
    try:
        while True:
            loss = step_fn(sampler)
            step += 1
            bar.update(1)
            loss_sum.add_(loss)
            if averager is not None and step >= swa_from and step % spe == 0:
                averager.update_parameters(model)
            if transform_at is not None and step == transform_at[0] * spe:
                with torch.no_grad():
                    model.load_state_dict(transform_at[1](model).state_dict())
                row = eval_row(model, data, loss_fn, step, spe)
                curves.append({**row, **(on_eval(model, step) if on_eval else {}), "transformed": 1.0})
                model.train()
            if rule.eval_due(step):
                if not math.isfinite(loss_sum.item()):
                    raise Diverged(minibatch_divergence(step))
                row = eval_row(model, data, loss_fn, step, spe)
                failure = full_loss_divergence(row["train_loss"], step)
                if failure:
                    raise Diverged(failure)
                if on_eval is not None:
                    row.update(on_eval(model, step))
                    model.train()
                curves.append(row)
                bar.set_postfix(loss=f"{row['train_loss']:.3g}", acc=f"{row['train_acc']:.3f}")
                rule.record(step, row)
            if rule.done(step):
                break
    finally:
        bar.close()

    if averager is not None and averager.n_averaged.item() > 0:
        _load_average(model, averager, sampler)
        curves.append({**eval_row(model, data, loss_fn, step, spe), "swa": 1.0})
    elif not curves or curves[-1]["step"] != step:
        curves.append(eval_row(model, data, loss_fn, step, spe))
    model.eval()
    return TrainResult(
        model=model,
        init_state=init_state,
        steps=step,
        epochs=step / spe,
        stop_reason=rule.stop_reason,
        converged=rule.reached_target,
        target_step=rule.target_step,
        curves=curves,
        seconds=time.perf_counter() - started,
        next_iterate=one_more_step(model, step_fn, sampler),
    )


def eval_row(model: nn.Module, data: TensorData, loss_fn: LossFn, step: int, spe: int) -> dict[str, float]:
    """One curve point: step, epoch and the full train and test loss and accuracy (eval mode)."""
    train_loss, train_acc = evaluate(model, data.x_train, data.y_train, loss_fn)
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test, loss_fn)
    return {"step": step, "epoch": step / spe, "train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc}


def _load_average(model: nn.Module, averager: torch.optim.swa_utils.AveragedModel, sampler: BatchSampler) -> None:
    """Copy the averaged iterate into ``model`` and recompute batch-norm statistics for it."""
    with torch.no_grad():
        for p, q in zip(model.parameters(), averager.module.parameters()):
            p.copy_(q)
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        loader = [(sampler.x[i : i + 256],) for i in range(0, sampler.n, 256)]
        torch.optim.swa_utils.update_bn(loader, model)


def one_more_step(model: nn.Module, step_fn: Callable, sampler: BatchSampler) -> Callable[[], Mapping[str, torch.Tensor]]:
    """A closure giving the parameters after one more optimizer step from the final iterate, on copies."""
    frozen = copy.deepcopy((model, step_fn, sampler))

    def next_iterate() -> Mapping[str, torch.Tensor]:
        m, s, b = copy.deepcopy(frozen)
        m.train()
        s(b)
        return {k: v.detach() for k, v in m.named_parameters()}

    return next_iterate
