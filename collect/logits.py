"""Predictions, class probabilities and margins from a model's outputs, for both heads the project trains.

* Softmax head: C ≥ 2 logits f(x) ∈ R^C (``cross_entropy``, ``mse``, ``mse_mean``). Prediction argmax_c f_c;
  class probabilities S(f) = softmax(f); output margin γ = f_y − max_{j≠y} f_j.
* Single-logit (sigmoid) head: one logit z = f(x) ∈ R for a two-class task with labels y ∈ {0, 1}
  (``binary_cross_entropy``, paper 002's 784-40-40-1 network). Prediction 1[z > 0]; class probabilities
  S(z) = (1 − σ(z), σ(z)); output margin γ = (2y − 1)·z. These are exactly the quantities of the softmax head on the
  two logits (0, z) — softmax(0, z) = (1 − σ(z), σ(z)), and (0, z) has margin (2y − 1)·z — so every definition below
  is one definition, and the margin on class probabilities is 2σ((2y − 1)z) − 1 = tanh((2y − 1)z / 2).

The head is read off the last axis of the outputs (size 1: sigmoid head), so these functions need no config.
"""

from __future__ import annotations

import torch


def is_single_logit(logits: torch.Tensor) -> bool:
    """True for the outputs of a single-logit (sigmoid) head: last axis of size 1."""
    return logits.shape[-1] == 1


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Predicted labels over the last axis: 1[z > 0] for one logit, argmax_c f_c otherwise (integer tensor)."""
    if is_single_logit(logits):
        return (logits[..., 0] > 0).long()
    return logits.argmax(-1)


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """S(f): softmax(f) over the last axis, or (1 − σ(z), σ(z)) for one logit (both sum to 1 over the last axis)."""
    if is_single_logit(logits):
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=-1)
    return torch.softmax(logits, dim=-1)


def output_margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """γ_i = f_{y_i} − max_{j≠y_i} f_j for rows of [N, C] logits; γ_i = (2y_i − 1)·z_i for [N, 1] logits."""
    if is_single_logit(logits):
        return (2 * labels.to(logits.dtype) - 1) * logits[:, 0]
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true - others.max(1).values


def probability_margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The output margin on class probabilities S(f) (the "softmax margin"): S_y − max_{j≠y} S_j; for one logit
    2σ((2y − 1)z) − 1, computed as tanh((2y − 1)z / 2) (no cancellation for confident points)."""
    if is_single_logit(logits):
        return torch.tanh(output_margins(logits, labels) / 2)
    return output_margins(torch.softmax(logits, dim=-1), labels)


def output_hessian_trace(logits: torch.Tensor) -> torch.Tensor:
    """Tr ∇²_f ℓ of the cross-entropy of each row: 1 − Σ_c S_c² for softmax logits, σ(z)(1 − σ(z)) for one logit
    under the logistic loss (``collect.losses.binary_cross_entropy``)."""
    if is_single_logit(logits):
        p = torch.sigmoid(logits[..., 0])
        return p * (1 - p)
    s = torch.softmax(logits, dim=-1)
    return 1 - s.pow(2).sum(-1)
