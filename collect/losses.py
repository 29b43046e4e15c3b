"""Training losses on logits f(x) ∈ R^C and integer labels y; every one is a mean over the N samples of a batch.

* ``cross_entropy``: (1/N) Σ_i −log softmax(f(x_i))_{y_i}.
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


def _onehot(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.one_hot(labels, logits.shape[-1]).to(logits.dtype)


def squared_error(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_i ½ ‖f(x_i) − onehot(y_i)‖², summed over outputs (edge-of-stability convention)."""
    return 0.5 * (logits - _onehot(logits, labels)).pow(2).sum(-1).mean()


def squared_error_mean(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_i (1/C) ‖f(x_i) − onehot(y_i)‖², PyTorch's ``mse_loss`` (mean over samples and outputs)."""
    return F.mse_loss(logits, _onehot(logits, labels))


LOSSES: dict[str, LossFn] = {"cross_entropy": cross_entropy, "mse": squared_error, "mse_mean": squared_error_mean}

# ∇²_f ℓ of the squared-error losses as a multiple of the identity, as a function of the number of outputs C
# (used by the exact per-sample Hessian trace, collect.hessian.per_sample).
SQUARED_ERROR_CURVATURE: dict[str, Callable[[int], float]] = {"mse": lambda c: 1.0, "mse_mean": lambda c: 2.0 / c}


def get_loss(name: str) -> LossFn:
    return LOSSES[name]
