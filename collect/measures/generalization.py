"""Generalization numbers (ledger ``gen.*``): train/test accuracy and loss and their gaps.

The training set is S ∪ A (attack points with their wrong labels, paper 002), so ``train_acc`` is what the model
fitted; ``clean_train_acc`` is on S alone and ``attack_fit`` the fraction of A predicted with its wrong label.
Predictions are ``collect.logits.predict``: argmax of the logits, or 1[z > 0] for a single-logit (sigmoid) head.
"""

from __future__ import annotations

import torch

from collect.logits import predict
from collect.measures.context import MeasureContext, MeasureResult, batched_logits
from collect.measures.registry import measure


def _loss_acc(ctx: MeasureContext, logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    if labels.numel() == 0:
        return float("nan"), float("nan")
    return float(ctx.loss_fn(logits, labels)), float((predict(logits) == labels).double().mean())


@measure("generalization", prefix="gen", description="train/test accuracy and loss, gaps (always computed)")
def generalization(ctx: MeasureContext) -> MeasureResult:
    """Accuracy and mean loss on the training set S ∪ A and the test set E, and the gaps train − test."""
    train_logits = batched_logits(ctx.model, ctx.x_train)
    test_logits = batched_logits(ctx.model, ctx.x_test)
    train_loss, train_acc = _loss_acc(ctx, train_logits, ctx.y_train)
    test_loss, test_acc = _loss_acc(ctx, test_logits, ctx.y_test)
    clean = ~ctx.is_attack
    values = {
        "train_acc": train_acc,
        "train_loss": train_loss,
        "test_acc": test_acc,
        "test_loss": test_loss,
        "test_err": 1.0 - test_acc,
        "gap_acc": train_acc - test_acc,
        "gap_loss": test_loss - train_loss,
    }
    if bool(ctx.is_attack.any()):
        values["clean_train_acc"] = _loss_acc(ctx, train_logits[clean], ctx.y_train[clean])[1]
        values["attack_fit"] = _loss_acc(ctx, train_logits[ctx.is_attack], ctx.y_train[ctx.is_attack])[1]
    return MeasureResult(values=values)


MEASURES = [generalization]
