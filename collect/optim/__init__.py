"""Optimizers as one-update step objects: ``build_optimizer(cfg, model, loss_fn)(next_batch) -> loss``."""

from collect.optim.build import build_optimizer, build_torch_optimizer
from collect.optim.entropy_sgd import EntropySGDStep
from collect.optim.sam import SAMStep
from collect.optim.step import TorchStep, TrainStep

__all__ = ["build_optimizer", "build_torch_optimizer", "EntropySGDStep", "SAMStep", "TorchStep", "TrainStep"]
