"""The one-update interface the training loop drives, and its plain torch.optim implementation."""

from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


class TrainStep(Protocol):
    """One parameter update. ``next_batch()`` yields a fresh minibatch (on the model's device) per call.

    Returns the detached minibatch loss at the parameters *before* the update. ``optimizer`` is the
    underlying ``torch.optim.Optimizer`` (learning-rate inspection, schedulers, SWA). A step object
    and its model must be deep-copyable together: ``copy.deepcopy((model, step))`` is an independent pair.
    """

    optimizer: torch.optim.Optimizer

    def __call__(self, next_batch: Callable[[], Batch]) -> Tensor: ...


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


class TorchStep:
    """A plain first-order step: forward, backward, ``optimizer.step()`` (SGD, GD, Adam, RMSProp, ...)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn) -> None:
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn

    def __call__(self, next_batch: Callable[[], Batch]) -> Tensor:
        x, y = next_batch()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()
