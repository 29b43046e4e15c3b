"""Training losses on logits f(x) ∈ R^C and integer labels y; every one is a mean over the N samples of a batch.

* ``cross_entropy``: (1/N) Σ_i −log softmax(f(x_i))_{y_i}.
* ``binary_cross_entropy`` — the logistic loss of a single-logit (sigmoid) head on a two-class task (paper 002's
  784-40-40-1 network), one logit z_i = f(x_i) ∈ R per sample (C = 1) and labels y_i ∈ {0, 1}:
      L = (1/N) Σ_i log(1 + exp(−(2y_i − 1) z_i)) = (1/N) Σ_i −[y_i log σ(z_i) + (1 − y_i) log(1 − σ(z_i))],
  ``torch.nn.functional.binary_cross_entropy_with_logits`` with its default mean. It equals ``cross_entropy`` on the
  two logits (0, z_i), so a train_loss target means the same number under both. The network has one output
  (``output_dim``); predictions are 1[z > 0] (``collect.logits``).
* ``mse`` — squared error in the convention of the edge-of-stability literature (Cohen et al. 2021; paper 004):
      L = (1/N) Σ_i ½ ‖f(x_i) − e_{y_i}‖² = (1/N) Σ_i ½ Σ_c (f_c(x_i) − [y_i = c])²,
  summed over the C outputs, so ∇²_f ℓ = I and gradient descent with step η is stable only while λ_max(∇²L) ≤ 2/η.
* ``mse_mean``: ``torch.nn.functional.mse_loss(f, onehot(y))``, the mean over samples *and* outputs,
      L = (1/N) Σ_i (1/C) Σ_c (f_c(x_i) − [y_i = c])² = (2/C) · mse,
  kept under its own name for runs that want PyTorch's default; its Hessian is 2/C times that of ``mse`` (0.2× for
  10 classes), so at a given η it sharpens far more slowly towards 2/η.

Training, Hessian measures and curves all call the function returned by ``get_loss(config.loss)``, so they agree.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def binary_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_i log(1 + exp(−(2y_i − 1) z_i)) for [N, 1] logits z and labels y ∈ {0, 1} (the logistic loss)."""
    if logits.shape[-1] != 1:
        raise ValueError(
            f"binary_cross_entropy takes one logit per sample (shape [N, 1]), got shape {tuple(logits.shape)}; "
            "build the model with output_dim('binary_cross_entropy', 2) = 1 output"
        )
    return F.binary_cross_entropy_with_logits(logits[..., 0], labels.to(logits.dtype))


def _onehot(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.one_hot(labels, logits.shape[-1]).to(logits.dtype)


def squared_error(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_i ½ ‖f(x_i) − onehot(y_i)‖², summed over outputs (edge-of-stability convention)."""
    return 0.5 * (logits - _onehot(logits, labels)).pow(2).sum(-1).mean()


def squared_error_mean(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_i (1/C) ‖f(x_i) − onehot(y_i)‖², PyTorch's ``mse_loss`` (mean over samples and outputs)."""
    return F.mse_loss(logits, _onehot(logits, labels))


LOSSES: dict[str, LossFn] = {
    "cross_entropy": cross_entropy,
    "binary_cross_entropy": binary_cross_entropy,
    "mse": squared_error,
    "mse_mean": squared_error_mean,
}
SINGLE_LOGIT_LOSSES = ("binary_cross_entropy",)  # losses of a one-output (sigmoid) head on a two-class task

# ∇²_f ℓ of the squared-error losses as a multiple of the identity, as a function of the number of outputs C
# (used by the exact per-sample Hessian trace, collect.hessian.per_sample).
SQUARED_ERROR_CURVATURE: dict[str, Callable[[int], float]] = {"mse": lambda c: 1.0, "mse_mean": lambda c: 2.0 / c}


def get_loss(name: str) -> LossFn:
    return LOSSES[name]


def output_dim(loss: str, num_classes: int) -> int:
    """Number of network outputs the loss trains: 1 for a single-logit loss (a two-class task), else num_classes."""
    if loss in SINGLE_LOGIT_LOSSES:
        if num_classes != 2:
            raise ValueError(
                f"loss = {loss!r} trains one output logit for a two-class task, this task has {num_classes} classes; "
                "set data.binary (e.g. 'low_high') or use loss = 'cross_entropy'"
            )
        return 1
    return num_classes
