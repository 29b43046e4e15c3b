"""Training losses: cross-entropy (default) and squared error on one-hot targets (edge-of-stability literature).

Both return the mean over the batch. ``mse`` is ``torch.nn.functional.mse_loss(f, onehot(y))``, i.e. the mean over
batch *and* classes of (f_c − [y = c])²; λ_max ≈ 2/η at the edge of stability (paper 004) holds for whatever loss
is being optimised, so this scaling convention only rescales the effective learning rate.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def squared_error(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(logits, F.one_hot(labels, logits.shape[-1]).to(logits.dtype))


LOSSES: dict[str, LossFn] = {"cross_entropy": cross_entropy, "mse": squared_error}


def get_loss(name: str) -> LossFn:
    return LOSSES[name]
