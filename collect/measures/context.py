"""What a measure receives (``MeasureContext``) and what it returns (``MeasureResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from collect.config import RunConfig, SpecError


class MeasureSkipped(Exception):
    """Raised by a measure that is not defined for this run (e.g. log volume on a 10-class task).

    The reason is logged as the tag ``measure_skipped.<name>``; the run itself still finishes.
    """


@dataclass(frozen=True)
class MeasureResult:
    """Named scalar values (ledger columns ``measure.<key>``) and optional per-sample arrays (a Parquet artifact)."""

    values: Mapping[str, float]
    per_sample: Mapping[str, np.ndarray] | None = None
    info: Mapping[str, str] = field(default_factory=dict)  # logged as tags, e.g. convergence notes


@dataclass(frozen=True)
class MeasureContext:
    """A trained model and the data it was trained on, as every measure sees it.

    ``model`` is in eval mode (batch norm uses running statistics, dropout off) unless the measure switches it.
    ``x_train``/``y_train`` are the full training set S ∪ A (attack points included, with their wrong labels);
    ``is_attack`` marks the attack points. All tensors live on ``device``.
    """

    model: nn.Module
    config: RunConfig
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    is_attack: torch.Tensor
    num_classes: int
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # mean loss of (logits, labels)
    init_state: Mapping[str, torch.Tensor]  # parameters at initialisation (distance from init)
    device: torch.device
    seed: int
    # One more training step from the final iterate, on a copy: returns the parameters after it.
    # Needed by the "between iterates" λ_max of paper 004; None when not available.
    next_iterate: Callable[[], Mapping[str, torch.Tensor]] | None = None
    step: int | None = None  # training step at which the measure is taken (None: final)
    # The training curves (``collect.train``: rows with ``step``, ``train_loss``, ``train_acc``, …, in step order)
    # of the final measurement; None along training and when not available.
    curves: Sequence[Mapping[str, float]] | None = None

    @property
    def is_binary(self) -> bool:
        return self.num_classes == 2

    def generator(self, salt: int = 0) -> torch.Generator:
        """A seeded torch generator on the context's device, so estimators are reproducible per run."""
        g = torch.Generator(device=self.device)
        g.manual_seed(self.seed * 1_000_003 + salt)
        return g

    def train_subset(self, n: int | None, salt: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """A seeded subset of at most ``n`` training points (all of them when ``n`` is None or large)."""
        total = self.x_train.shape[0]
        if n is None or n >= total:
            return self.x_train, self.y_train
        g = torch.Generator().manual_seed(self.seed * 7919 + salt)
        idx = torch.randperm(total, generator=g)[:n].to(self.device)
        return self.x_train[idx], self.y_train[idx]


def batched_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Model outputs on ``x`` in chunks, without building a graph."""
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def check_option(cond: bool, measure_name: str, option: str, value: object, fix: str) -> None:
    """Raise ``SpecError`` naming ``measures.<measure>.<option>``, its value and the fix, unless ``cond`` holds."""
    if not cond:
        raise SpecError(f"measures.{measure_name}.{option} = {value!r}: {fix}")
