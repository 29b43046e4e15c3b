"""Map an ``OptimConfig`` to a step object: SGD, GD, Adam(W), RMSProp, Adagrad, SAM, Entropy-SGD (papers 002-004)."""

from __future__ import annotations

import torch
from torch import nn

from collect.config import OPTIMIZERS, OptimConfig, SpecError
from collect.optim.entropy_sgd import EntropySGDStep
from collect.optim.sam import SAMStep
from collect.optim.step import LossFn, TorchStep, TrainStep, trainable_parameters

_WITH_MOMENTUM = ("sgd", "gd", "rmsprop")
_SAM_BASES = ("sgd", "adam", "adamw", "rmsprop", "adagrad")


def build_torch_optimizer(name: str, params: list[nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """The torch optimizer ``name`` with ``cfg.lr``, ``cfg.momentum`` (SGD/GD/RMSProp) and ``cfg.weight_decay``.

    Weight decay is torch's coupled L2 term (λw added to the gradient) everywhere except AdamW, where it is
    decoupled (Loshchilov & Hutter 2019). Adam/AdamW/Adagrad have no momentum parameter, so a non-zero
    ``cfg.momentum`` is an error rather than silently ignored (it would be logged as ``hp.momentum``).
    """
    if name not in _WITH_MOMENTUM and cfg.momentum != 0:
        raise SpecError(
            f"optim.momentum = {cfg.momentum} does not apply to {name!r}; set it to 0 "
            f"(momentum is used by {', '.join(_WITH_MOMENTUM)})"
        )
    if cfg.momentum < 0:
        raise SpecError(f"optim.momentum = {cfg.momentum} must be >= 0")
    wd = cfg.weight_decay
    if name in ("sgd", "gd"):
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=wd)
    raise SpecError(
        f"optim.optimizer = {name!r} is not a torch optimizer; use one of sgd, gd, adam, adamw, rmsprop, adagrad"
    )


def build_optimizer(cfg: OptimConfig, model: nn.Module, loss_fn: LossFn) -> TrainStep:
    """A step object for ``cfg.optimizer`` on ``model``'s trainable parameters.

    ``gd`` is the same update as ``sgd``; the training loop feeds it the full training set.
    ``sam`` wraps ``cfg.sam_base`` (see :mod:`collect.optim.sam`); ``entropy_sgd`` takes ``cfg.esgd_L``
    minibatches per step (see :mod:`collect.optim.entropy_sgd`).
    """
    if not cfg.lr > 0:
        raise SpecError(f"optim.lr = {cfg.lr} must be > 0")
    if cfg.weight_decay < 0:
        raise SpecError(f"optim.weight_decay = {cfg.weight_decay} must be >= 0")
    params = trainable_parameters(model)
    if not params:
        raise ValueError("the model has no trainable parameters")
    name = cfg.optimizer
    if name == "sam":
        if cfg.sam_base not in _SAM_BASES:
            raise SpecError(f"optim.sam_base = {cfg.sam_base!r} is not supported; use one of {', '.join(_SAM_BASES)}")
        if not cfg.sam_rho > 0:
            raise SpecError(f"optim.sam_rho = {cfg.sam_rho}: SAM needs sam_rho > 0 (e.g. 0.05)")
        base = build_torch_optimizer(cfg.sam_base, params, cfg)
        return SAMStep(model, base, loss_fn, rho=cfg.sam_rho, adaptive=cfg.sam_adaptive)
    if name == "entropy_sgd":
        outer = build_torch_optimizer("sgd", params, cfg)
        try:
            return EntropySGDStep(
                model, outer, loss_fn, L=cfg.esgd_L, gamma=cfg.esgd_gamma, eps=cfg.esgd_eps, inner_lr=cfg.esgd_inner_lr
            )
        except ValueError as exc:
            raise SpecError(str(exc)) from None
    if name in ("sgd", "gd", "adam", "adamw", "rmsprop", "adagrad"):
        return TorchStep(model, build_torch_optimizer(name, params, cfg), loss_fn)
    raise SpecError(f"optim.optimizer = {name!r} is not supported; use one of {', '.join(OPTIMIZERS)}")
