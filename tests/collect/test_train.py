"""Stopping criteria, divergence, iterate averaging and the one-more-step closure of the training loop."""

from __future__ import annotations

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
    assert r.steps == r.target_step < 800


def test_overtraining_continues_extra_epochs_after_threshold():
    r = run({"max_epochs": 200, "train_acc": 1.0, "extra_epochs": 5})
    assert r.converged and r.stop_reason == "train_acc"
    assert r.steps == r.target_step + 5 * 4


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


# --- the comparison point and the stop rule (collect.stop_rule) -------------------------------------------------


def test_comparison_point_is_the_target_when_one_is_set_else_the_budget():
    from collect.config import StopConfig

    assert StopConfig(max_steps=10000).comparison_point == "budget"
    assert StopConfig(max_steps=10000).label() == "10000 steps"
    assert StopConfig(max_epochs=15, max_steps=900).label() == "900 steps or 15 epochs (whichever comes first)"
    loss = StopConfig(max_epochs=300, train_loss=0.01)
    assert loss.comparison_point == "target" and loss.label() == "train cross-entropy <= 0.01"
    assert loss.label("mse") == "train squared error <= 0.01"
    acc = StopConfig(max_epochs=300, train_acc=0.99, extra_epochs=5)
    assert acc.comparison_point == "target" and acc.label() == "train accuracy >= 0.99 + 5 epochs"
    cfg = run_config_from_dict({"loss": "mse", "stop": {"max_epochs": 3, "train_loss": 0.1}})
    assert cfg.comparison_label == "train squared error <= 0.1"


def test_stop_rule_at_its_defaults_evaluates_once_per_epoch_and_names_the_cap():
    from collect.config import StopConfig
    from collect.stop_rule import StopRule

    rule = StopRule(StopConfig(max_epochs=3, max_steps=100), steps_per_epoch=4)
    assert (rule.budget, rule.eval_every) == (12, 4)
    assert [t for t in range(1, 13) if rule.eval_due(t)] == [4, 8, 12]
    assert not rule.done(11) and rule.done(12) and rule.stop_reason == "max_epochs"
    rule = StopRule(StopConfig(max_epochs=30, max_steps=10), steps_per_epoch=4)
    assert rule.eval_due(10) and rule.done(10) and rule.stop_reason == "max_steps"


def test_stop_rule_deadline_is_target_step_plus_extra_epochs_capped_by_the_budget():
    from collect.config import StopConfig
    from collect.stop_rule import StopRule

    rule = StopRule(StopConfig(max_epochs=10, train_loss=0.1, extra_epochs=2), steps_per_epoch=4)
    rule.record(8, {"train_acc": 0.5, "train_loss": 0.2})
    assert rule.target_step is None and rule.deadline == 40
    rule.record(12, {"train_acc": 0.9, "train_loss": 0.1})
    rule.record(16, {"train_acc": 0.1, "train_loss": 9.0})  # t* is the FIRST evaluation meeting the target
    assert (rule.target_step, rule.deadline, rule.stop_reason) == (12, 20, "train_loss")
    assert not rule.done(19) and rule.done(20) and rule.stop_reason == "train_loss"
    late = StopRule(StopConfig(max_epochs=10, train_acc=0.9, extra_epochs=5), steps_per_epoch=4)
    late.record(36, {"train_acc": 0.95, "train_loss": 1.0})
    assert late.deadline == 40 and late.stop_reason == "train_acc"  # min(budget, 36 + 20)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_divergence_of_a_minibatch_loss_is_caught_at_the_next_evaluation(bad):
    """The step returns a non-finite minibatch loss once while the weights stay finite: the run still fails, at the
    first evaluation after it (the losses are summed on the device and read on the evaluation schedule, never per
    step; later finite losses do not hide it)."""
    cfg = run_config_from_dict({"optim": {"lr": 0.1, "batch_size": 16}, "stop": {"max_epochs": 5}})
    calls = {"n": 0}

    def build(m):
        inner = build_optimizer(cfg.optim, m, cross_entropy)

        def step(sampler):
            calls["n"] += 1
            loss = inner(sampler)
            return torch.tensor(bad) if calls["n"] == 6 else loss

        step.optimizer = inner.optimizer
        return step

    with pytest.raises(Diverged, match=r"non-finite by step 8 \(lower optim.lr"):
        train(cfg, model(), blobs(), cross_entropy, build, progress=False)


# --- what a run's training reached (collect.train_outcome) -----------------------------------------------------


def test_learned_rule_at_its_default_fraction():
    from collect.train_outcome import LEARNED_FRACTION, chance_level, learned

    assert LEARNED_FRACTION == 0.25
    assert chance_level([0, 0, 1]) == pytest.approx(2 / 3)
    # threshold 2/3 + 0.25 * 1/3 = 0.75
    assert not learned(0.74, 2 / 3) and learned(0.76, 2 / 3)
    assert chance_level([3] * 7 + [1] * 3) == 0.7
    with pytest.raises(ValueError, match="empty"):
        chance_level([])


def test_outcome_metrics_log_converged_only_for_target_sweeps():
    from collect.train_outcome import outcome_metrics, outcome_tags

    budget = run_config_from_dict({"stop": {"max_steps": 100}})
    m = outcome_metrics(budget, 100, 2.5, 1.0, None, 0.5, 0.1)
    assert "train.converged" not in m and "train.target_step" not in m and m["train.learned"] == 1.0
    assert outcome_tags(budget, "max_steps") == {"stop_reason": "max_steps", "comparison_point": "100 steps"}
    target = run_config_from_dict({"stop": {"max_epochs": 9, "train_acc": 0.99}})
    missed = outcome_metrics(target, 90, 9.0, 1.0, None, 0.2, 0.1)
    assert missed["train.converged"] == 0.0 and "train.target_step" not in missed and missed["train.learned"] == 0.0
    met = outcome_metrics(target, 40, 4.0, 1.0, 40, 0.995, 0.1)
    assert (met["train.converged"], met["train.target_step"], met["train.learned"]) == (1.0, 40.0, 1.0)


def test_target_step_is_the_first_evaluation_meeting_the_target():
    r = run({"max_epochs": 200, "train_acc": 1.0, "extra_epochs": 3})
    first = next(row["step"] for row in r.curves if row["train_acc"] >= 1.0)
    assert r.target_step == first and r.steps == first + 3 * 4
