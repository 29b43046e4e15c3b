"""Stopping criteria, divergence, iterate averaging and the one-more-step closure of the training loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from collect.config import RunConfig, SpecError, run_config_from_dict
from collect.losses import cross_entropy
from collect.optim import build_optimizer
from collect.train import BatchSampler, Diverged, TensorData, train


def blobs(n: int = 64, seed: int = 0) -> TensorData:
    """Two well separated Gaussian blobs: linearly separable, so 100 % train accuracy is reachable."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 4, generator=g) * 0.3 + (y[:, None].float() * 2 - 1) * 2
    return TensorData(x, y, x.clone(), y.clone(), torch.zeros(n, dtype=torch.bool))


def model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def run(stop: dict, optim: dict | None = None, data: TensorData | None = None) -> object:
    cfg = run_config_from_dict({"optim": {"lr": 0.1, "batch_size": 16, **(optim or {})}, "stop": stop})
    return train(cfg, model(), data or blobs(), cross_entropy, lambda m: build_optimizer(cfg.optim, m, cross_entropy), progress=False)


def test_max_steps_stops_exactly():
    r = run({"max_steps": 7, "max_epochs": None})
    assert r.steps == 7 and r.stop_reason == "max_steps" and not r.converged


def test_gd_with_only_max_steps_trains_max_steps_steps():
    """Full-batch GD makes one step per epoch; a spec that sets only max_steps must get all of them (a former
    default max_epochs = 20 silently cut this to 20 steps)."""
    r = run({"max_steps": 57}, {"optimizer": "gd"})
    assert r.steps == 57 and r.epochs == 57 and r.stop_reason == "max_steps"
    assert r.curves[-1]["step"] == 57


def test_no_default_caps_the_budget():
    """Neither budget field has a default: an unbounded spec is refused, naming both fields."""
    assert RunConfig().stop.max_steps is None and RunConfig().stop.max_epochs is None
    with pytest.raises(SpecError, match="set max_steps or max_epochs"):
        run_config_from_dict({"stop": {"train_acc": 0.9}})


def test_smaller_of_two_set_budgets_wins_and_is_named():
    r = run({"max_steps": 100, "max_epochs": 5})  # 4 steps per epoch: 20 < 100
    assert r.steps == 20 and r.stop_reason == "max_epochs"


def test_max_epochs_counts_steps_per_epoch():
    r = run({"max_epochs": 3})  # 64 points, batch 16 -> 4 steps per epoch
    assert r.steps == 12 and r.stop_reason == "max_epochs" and r.epochs == 3


def test_train_acc_threshold_stops_when_met():
    r = run({"max_epochs": 200, "train_acc": 1.0})
    assert r.stop_reason == "train_acc" and r.converged
    assert r.curves[-1]["train_acc"] == 1.0
    assert r.steps == r.converged_step < 800


def test_overtraining_continues_extra_epochs_after_threshold():
    r = run({"max_epochs": 200, "train_acc": 1.0, "extra_epochs": 5})
    assert r.converged and r.stop_reason == "train_acc"
    assert r.steps == r.converged_step + 5 * 4


def test_train_loss_threshold():
    r = run({"max_epochs": 500, "train_loss": 0.05})
    assert r.stop_reason == "train_loss" and r.curves[-1]["train_loss"] <= 0.05


def test_budget_caps_overtraining():
    r = run({"max_epochs": 200, "max_steps": 30, "train_acc": 0.5, "extra_epochs": 100})
    assert r.steps == 30 and r.converged


def test_divergence_is_detected():
    data = blobs()
    huge = TensorData(data.x_train * 1e30, data.y_train, data.x_test, data.y_test, data.is_attack)
    with pytest.raises(Diverged, match="lower optim.lr"):
        run({"max_epochs": 5}, {"lr": 1e10}, data=huge)


def test_full_batch_gd_uses_every_point_each_step():
    r = run({"max_epochs": 3}, {"optimizer": "gd"})
    assert r.steps == 3


def test_swa_replaces_weights_with_average():
    r = run({"max_epochs": 8}, {"swa": True, "swa_start": 0.5})
    assert r.curves[-1].get("swa") == 1.0


def test_next_iterate_is_one_step_on_a_copy():
    r = run({"max_epochs": 2})
    before = {k: v.clone() for k, v in r.model.named_parameters()}
    after = r.next_iterate()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(before[k], v) for k, v in r.model.named_parameters())  # final model untouched
    again = r.next_iterate()
    assert all(torch.equal(after[k], again[k]) for k in after)  # deterministic


def test_batch_sampler_covers_each_point_once_per_epoch():
    x = torch.arange(10.0)[:, None]
    s = BatchSampler(x, torch.arange(10), 3, seed=0)
    seen = torch.cat([s()[1] for _ in range(s.steps_per_epoch)])
    assert sorted(seen.tolist()) == list(range(10))
