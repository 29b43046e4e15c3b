"""Optimization-based measures of Jiang et al. 2020 ("Fantastic generalization measures", section C.4): how fast
training reached low cross-entropy, read from the training curves the run already logged, and the variance of the
minibatch gradient at the end of training.

* ``steps_to_loss_0p1`` = the first step t with L_train(t) ≤ 0.1, and ``steps_loss_0p1_to_0p01`` = (first step with
  L_train ≤ 0.01) − (first step with L_train ≤ 0.1), where L_train is the mean training cross-entropy over S ∪ A that
  ``collect.train`` logs every ``stop.eval_every`` steps (default: once per epoch). A crossing is known to that
  resolution: the value is the first *logged* step at or below the threshold, an upper bound on the exact step by
  less than ``eval_every``. A threshold the run never reached gives NaN, and the diagnostic ``…_reached`` is 0.
  Rows of the averaged model (SWA) are left out. Defined for ``loss = "cross_entropy"`` and
  ``"binary_cross_entropy"`` runs (the thresholds are cross-entropy values; the logistic loss of one logit z is the
  cross-entropy of the two logits (0, z), ``collect.losses``); others are skipped with the reason.
* ``grad_noise_variance`` = (1/K) Σ_k ‖g_k − ḡ‖², g_k = ∇L_{B_k}(w) the mean-loss gradient of minibatch B_k, over a
  seeded partition of the training set into K = ⌊n/B⌋ minibatches of the run's batch size B (full-batch GD: one
  batch, variance 0), ḡ = (1/K) Σ_k g_k; all trainable parameters; the model in eval mode (dropout off, batch
  norm on running statistics), like every other measure.

Expected direction (+1 for all three): more steps mean a less stable algorithm in the sense of Hardt et al. 2016
(the stability bound of SGD grows with the number of steps), and at a minimum the gradient covariance tracks the
curvature, so a larger gradient noise goes with a sharper solution.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch.func import functional_call, grad, vmap

from collect.config import SpecError
from collect.measures.context import MeasureContext, MeasureResult, MeasureSkipped
from collect.measures.registry import measure

JIANG = "Jiang et al. 2020, Fantastic Generalization Measures and Where to Find Them, section C.4"


def first_step_at_or_below(curves: Sequence[Mapping[str, float]], threshold: float, key: str = "train_loss") -> float:
    """The step of the first logged row with ``key`` ≤ ``threshold`` (rows of the SWA average excluded); NaN if none."""
    for row in curves:
        if row.get("swa"):
            continue
        value = row.get(key)
        if value is not None and math.isfinite(value) and value <= threshold:
            return float(row["step"])
    return float("nan")


@measure(
    "optimization_speed",
    directions={"steps_to_loss_0p1": 1, "steps_loss_0p1_to_0p01": 1},
    diagnostics=("steps_to_loss_0p1_reached", "steps_to_loss_0p01_reached", "curve_eval_every"),
    paper=JIANG,
)
def optimization_speed(ctx: MeasureContext) -> MeasureResult:
    """Steps to reach training cross-entropy 0.1, and from 0.1 to 0.01, from the run's logged training curves."""
    if ctx.curves is None:
        raise MeasureSkipped("no training curves were handed to the measure (ctx.curves is None)")
    if ctx.config.loss not in ("cross_entropy", "binary_cross_entropy"):
        raise MeasureSkipped(f"the thresholds 0.1 and 0.01 are cross-entropy values; this run trains with loss = {ctx.config.loss!r}")
    s1 = first_step_at_or_below(ctx.curves, 0.1)
    s2 = first_step_at_or_below(ctx.curves, 0.01)
    steps = [float(r["step"]) for r in ctx.curves if not r.get("swa")]
    spacing = min((b - a for a, b in zip(steps, steps[1:]) if b > a), default=float("nan"))
    values = {
        "steps_to_loss_0p1": s1,
        "steps_loss_0p1_to_0p01": s2 - s1,
        "steps_to_loss_0p1_reached": float(not math.isnan(s1)),
        "steps_to_loss_0p01_reached": float(not math.isnan(s2)),
        "curve_eval_every": spacing,
    }
    return MeasureResult(values=values)


def minibatch_gradients(model: torch.nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                        generator: torch.Generator, group: int = 32) -> torch.Tensor:
    """[K, dim] mean-loss gradients of K = ⌊n/B⌋ minibatches of a seeded partition of (x, y), ``group`` at a time."""
    n = x.shape[0]
    k = n // batch_size
    order = torch.randperm(n, generator=generator)[: k * batch_size].to(x.device)
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())

    def batch_loss(p, xb, yb):
        return loss_fn(functional_call(model, {**buffers, **p}, (xb,)), yb)

    per_batch = vmap(grad(batch_loss), in_dims=(None, 0, 0))
    out = []
    for i in range(0, k, group):
        idx = order[i * batch_size : min(k, i + group) * batch_size].view(-1, batch_size)
        g = per_batch(params, x[idx], y[idx])
        out.append(torch.cat([g[name].reshape(idx.shape[0], -1) for name in params], 1).detach())
    return torch.cat(out)


@measure(
    "grad_noise",
    directions={"grad_noise_variance": 1},
    diagnostics=("grad_noise_n_batches", "grad_noise_mean_grad_sq"),
    paper=JIANG,
)
def grad_noise(ctx: MeasureContext, *, batch_size: int | None = None, n_samples: int | None = None) -> MeasureResult:
    """(1/K) Σ_k ‖g_k − ḡ‖² over K minibatch gradients at the final weights (``batch_size`` default: the run's;
    full-batch GD: the whole set, variance 0). Diagnostic: ‖ḡ‖² (the squared full-gradient norm it is noise around)."""
    b = batch_size
    if b is None:
        b = ctx.x_train.shape[0] if ctx.config.optim.optimizer == "gd" else ctx.config.optim.batch_size
    if not b >= 1:
        raise SpecError(f"measures.grad_noise.batch_size = {batch_size!r}: must be >= 1")
    if n_samples is not None and n_samples < 1:
        raise SpecError(f"measures.grad_noise.n_samples = {n_samples!r}: give a positive number of points")
    x, y = ctx.train_subset(n_samples, salt=0)
    b = min(b, x.shape[0])
    g = minibatch_gradients(ctx.model, ctx.loss_fn, x, y, b, torch.Generator().manual_seed(ctx.seed * 31 + 5)).double()
    mean = g.mean(0)
    values = {
        "grad_noise_variance": float((g - mean).pow(2).sum(1).mean()),
        "grad_noise_n_batches": float(g.shape[0]),
        "grad_noise_mean_grad_sq": float(mean.pow(2).sum()),
    }
    return MeasureResult(values=values, info={"batch_size": str(b)})


MEASURES = [optimization_speed, grad_noise]
