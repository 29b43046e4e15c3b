"""The single-logit (sigmoid) head of paper 002 (``loss = "binary_cross_entropy"``, 784-40-40-1): the loss against
its formula, the spec check, training to 100 % through ``collect.train`` and a real sweep, and stacked training
against one-at-a-time training.

Ground truths are independent of the code under test: the logistic loss from numpy's ``logaddexp`` in float64, the
margins (2y − 1)·z from the raw logits, log volume against the same function given as two logits (0, z).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from collect import tracking
from collect.config import SpecError, run_config_from_dict
from collect.data import load_dataset
from collect.losses import binary_cross_entropy, cross_entropy, get_loss, output_dim
from collect.measures.context import MeasureContext
from collect.measures.generalization import generalization
from collect.measures.margins import margins
from collect.measures.volume import log_volume
from collect.models import build_model
from collect.optim import build_optimizer
from collect.runner import run_sweep, to_tensors
from collect.stack_plan import plan_stacks
from collect.sweep import expand, parse_spec
from collect.train import train
from collect.train_stacked import replay_train, train_stack

PAPER_002 = {  # paper 002 section 5.2 at test size: binarised MNIST (0-4 vs 5-9), 784-40-40-1, NNGP init, SGD
    "loss": "binary_cross_entropy",
    "seed": 0,
    "data": {"dataset": "mnist", "binary": "low_high", "n_train": 100, "n_test": 100, "data_seed": 0},
    "model": {"arch": "fcn", "width": 40, "depth": 2, "init_sigma_w": 1.0, "init_sigma_b": 0.1},
    "optim": {"optimizer": "sgd", "lr": 0.1, "batch_size": 32},
    "stop": {"train_acc": 1.0, "max_epochs": 100},
}


def logistic_loss(z: np.ndarray, y: np.ndarray) -> float:
    """(1/N) Σ log(1 + exp(−(2y − 1) z)) in float64, by numpy (log(1 + e^t) = logaddexp(0, t))."""
    return float(np.mean(np.logaddexp(0.0, -(2.0 * y - 1.0) * z)))


def test_loss_equals_the_logistic_formula_on_random_logits():
    """Float64, 1e-12 relative: both sides are the same sum of 1,000 terms, so only rounding separates them; a
    wrong sign convention (y ∈ {−1, 1} vs {0, 1}), a sum instead of a mean or a missing sigmoid is off by O(1)."""
    g = torch.Generator().manual_seed(3)
    z = 6 * torch.randn(1000, 1, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (1000,), generator=g)
    got = float(binary_cross_entropy(z, y))
    assert got == pytest.approx(logistic_loss(z[:, 0].numpy(), y.numpy()), rel=1e-12)
    # the same number as cross-entropy on the two logits (0, z), which is why a train_loss target means the same
    assert got == pytest.approx(float(cross_entropy(torch.cat([torch.zeros_like(z), z], 1), y)), rel=1e-12)
    assert get_loss("binary_cross_entropy") is binary_cross_entropy
    with pytest.raises(ValueError, match="one logit"):
        binary_cross_entropy(torch.cat([z, z], 1), y)


def test_output_dim_is_one_for_the_sigmoid_head_only():
    assert output_dim("binary_cross_entropy", 2) == 1
    assert output_dim("cross_entropy", 2) == 2 and output_dim("mse", 10) == 10
    with pytest.raises(ValueError, match="data.binary"):
        output_dim("binary_cross_entropy", 10)


def test_spec_without_data_binary_fails_naming_the_field_and_the_fix():
    raw = {k: v for k, v in PAPER_002.items() if k != "data"} | {"data": {"dataset": "mnist"}}
    with pytest.raises(SpecError, match=r"loss = 'binary_cross_entropy'.*data\.binary.*'low_high'.*cross_entropy"):
        run_config_from_dict(raw)
    spec = {"name": "bad", "seeds": [0], "base": raw}
    with pytest.raises(SpecError, match=r"bad\.toml.*data\.binary"):
        expand(parse_spec(spec, "bad.toml"))
    assert run_config_from_dict(PAPER_002).loss == "binary_cross_entropy"  # with data.binary it is accepted
    boolean = raw | {"data": {"dataset": "boolean", "n_train": 64, "n_test": 64}}
    assert run_config_from_dict(boolean).loss == "binary_cross_entropy"  # the Boolean system is binary already
    assert run_config_from_dict(PAPER_002).comparison_label == "train accuracy >= 1"
    loss_target = run_config_from_dict(PAPER_002 | {"stop": {"train_loss": 0.01, "max_epochs": 5}})
    assert loss_target.comparison_label == "train binary cross-entropy <= 0.01"


def _context(cfg, model, data, num_classes, result) -> MeasureContext:
    return MeasureContext(
        model=model, config=cfg, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test,
        is_attack=data.is_attack, num_classes=num_classes, loss_fn=get_loss(cfg.loss), init_state=result.init_state,
        device=torch.device("cpu"), seed=cfg.seed,
    )


class TwoLogits(nn.Module):
    """The logits (0, z) of a single-logit model: same predictions and the same function f ∈ {±1}^n."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        z = self.inner(x)
        return torch.cat([torch.zeros_like(z), z], 1)


def test_784_40_40_1_trains_to_100_percent_and_its_measures_follow_the_single_logit_convention():
    cfg = run_config_from_dict(PAPER_002)
    ds = load_dataset(cfg.data, cfg.data_seed)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, ds.input_shape, output_dim(cfg.loss, ds.num_classes), cfg.seed)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 40), (40, 40), (40, 1)]
    loss_fn = get_loss(cfg.loss)
    data = to_tensors(ds, torch.device("cpu"))
    result = train(cfg, model, data, loss_fn, lambda m: build_optimizer(cfg.optim, m, loss_fn), progress=False)
    assert result.converged and result.stop_reason == "train_acc" and result.curves[-1]["train_acc"] == 1.0
    model = result.model.eval()
    with torch.no_grad():
        z_train, z_test = model(data.x_train)[:, 0].double(), model(data.x_test)[:, 0].double()
    y_train, y_test = data.y_train.numpy(), data.y_test.numpy()
    # the logged curve is the logistic loss and the 1[z > 0] accuracy, recomputed here from the raw logits
    last = result.curves[-1]
    assert last["train_loss"] == pytest.approx(logistic_loss(z_train.numpy(), y_train), rel=1e-5)
    assert last["test_acc"] == pytest.approx(float(np.mean((z_test.numpy() > 0) == (y_test == 1))))
    assert all(0.0 <= r["train_acc"] <= 1.0 for r in result.curves)

    ctx = _context(cfg, model, data, ds.num_classes, result)
    gen = generalization(ctx).values
    assert gen["train_acc"] == 1.0 and gen["test_acc"] == pytest.approx(last["test_acc"])
    assert gen["train_loss"] == pytest.approx(last["train_loss"], rel=1e-6)

    got = margins(ctx)
    gamma = (2.0 * y_train - 1.0) * z_train.numpy()
    np.testing.assert_allclose(got.per_sample["output_margin"], gamma, rtol=1e-12)
    np.testing.assert_allclose(got.per_sample["softmax_margin"], 2 / (1 + np.exp(-gamma)) - 1, rtol=1e-9, atol=1e-15)
    assert (got.per_sample["prediction"] == (z_train.numpy() > 0)).all() and got.per_sample["correct"].all()
    assert got.values["margin_min"] == pytest.approx(gamma.min()) and got.values["margin_min"] > 0

    # log volume: the NNGP prior of f = sign(z) on S ∪ E, the same number as for the two logits (0, z), and the
    # PAC-Bayes bound is defined because the training error is zero
    vol = log_volume(ctx)
    same = log_volume(_context(cfg, TwoLogits(model).eval(), data, ds.num_classes, result))
    assert np.isfinite(vol.values["log_volume"]) and vol.values["log_volume"] < 0
    assert vol.values["log_volume"] == same.values["log_volume"]
    assert vol.values["log_volume_ep_converged"] == 1.0 and np.isfinite(vol.values["pac_bayes_bound"])


def test_a_sweep_with_the_sigmoid_head_logs_every_training_and_generalization_column(mlflow_uri):
    """Through ``run_sweep`` and MLflow: train.converged / train.learned, gen.*, the loss curve, margins, Keskar
    sharpness at the volume sweep's epsilon and log volume, with nothing skipped."""
    spec = {"name": "sigmoid", "seeds": [0], "base": PAPER_002,
            "measures": ["margins", {"name": "sharpness", "options": {"epsilon": 1e-4}}, "log_volume"]}
    summary = run_sweep(expand(parse_spec(spec, "sigmoid.toml")), sweep="sigmoid", tracking_uri=mlflow_uri,
                        device="cpu", progress=False)
    assert summary.finished == 1 and summary.failed == 0
    client = MlflowClient(tracking_uri=mlflow_uri)
    (kid,) = tracking.child_runs(client, client.get_experiment_by_name("sigmoid").experiment_id)
    m, tags = kid.data.metrics, kid.data.tags
    assert m["train/converged"] == 1.0 and m["train/learned"] == 1.0 and m["gen/train_acc"] == 1.0
    assert 0.5 < m["gen/test_acc"] <= 1.0 and m["gen/gap_acc"] == pytest.approx(1.0 - m["gen/test_acc"])
    assert m["measure/margin_min"] > 0 and m["measure/sharpness"] > 0 and m["measure/log_volume"] < 0
    assert not [t for t in tags if t.startswith("measure_skipped")]
    assert kid.data.params["loss"] == "binary_cross_entropy"
    curve = client.get_metric_history(kid.info.run_id, "curve/train_loss")
    assert len(curve) >= 2 and curve[-1].value == pytest.approx(m["gen/train_loss"], rel=1e-5)


def test_a_train_loss_target_stops_at_the_first_evaluation_with_logistic_loss_below_it():
    """The stop rule on the logistic loss: the run stops at the first evaluation with L <= 0.05 (every earlier one
    above it), and L recomputed by numpy from the final logits is that evaluation's value."""
    cfg = run_config_from_dict({
        "loss": "binary_cross_entropy", "seed": 0,
        "data": {"dataset": "digits", "binary": [3, 5], "n_train": 60, "n_test": 40},
        "model": {"arch": "fcn", "width": 12, "depth": 2},
        "optim": {"optimizer": "sgd", "lr": 0.1, "batch_size": 16},
        "stop": {"train_loss": 0.05, "max_epochs": 300},
    })
    ds = load_dataset(cfg.data, cfg.data_seed)
    loss_fn = get_loss(cfg.loss)
    data = to_tensors(ds, torch.device("cpu"))
    model = build_model(cfg.model, ds.input_shape, output_dim(cfg.loss, ds.num_classes), cfg.seed)
    result = train(cfg, model, data, loss_fn, lambda m: build_optimizer(cfg.optim, m, loss_fn), progress=False)
    assert result.stop_reason == "train_loss" and result.converged and result.target_step == result.steps
    losses = [r["train_loss"] for r in result.curves]
    assert losses[-1] <= 0.05 and all(v > 0.05 for v in losses[:-1]) and len(losses) > 1
    with torch.no_grad():
        z = result.model.eval()(data.x_train)[:, 0].double().numpy()
    assert losses[-1] == pytest.approx(logistic_loss(z, data.y_train.numpy()), rel=1e-5)


TINY_STACK = {  # 8-by-8 digits 3 vs 5, a 64-12-12-1 network: the stacked test of test_stacked.py, one logit
    "name": "tiny-sigmoid-stack",
    "seeds": [0, 1],
    "measures": ["margins"],
    "base": {
        "loss": "binary_cross_entropy",
        "data": {"dataset": "digits", "binary": [3, 5], "n_train": 60, "n_test": 40},
        "model": {"arch": "fcn", "width": 12, "depth": 2},
        "optim": {"optimizer": "sgd", "lr": 0.1, "batch_size": 16, "momentum": 0.9},
        "stop": {"max_epochs": 8, "train_acc": 1.0, "extra_epochs": 1},
    },
    "grid": {"optim.lr": [0.1, 0.02]},
}


def test_stacked_training_of_the_sigmoid_head_equals_one_at_a_time():
    """Tolerance as in test_stacked.py: identical stopping points and accuracies, logits within 1e-4 relative (the
    stack's batched products round differently from nn.Linear's)."""
    stacks, alone, _ = plan_stacks(expand(parse_spec(TINY_STACK, "tiny.toml")))
    assert not alone and len(stacks) == 1 and len(stacks[0]) == 4
    configs = [p.config for p in stacks[0]]
    assert {c.loss for c in configs} == {"binary_cross_entropy"}
    cpu = torch.device("cpu")
    for cfg, stacked in zip(configs, train_stack(configs, cpu)):
        ds = load_dataset(cfg.data, cfg.data_seed)
        loss_fn = get_loss(cfg.loss)

        def fresh():
            return build_model(cfg.model, ds.input_shape, output_dim(cfg.loss, ds.num_classes), cfg.seed)

        torch.manual_seed(cfg.seed)
        ref = train(cfg, fresh(), to_tensors(ds, cpu), loss_fn, lambda m: build_optimizer(cfg.optim, m, loss_fn),
                    progress=False)
        got = replay_train(stacked)(cfg, fresh(), to_tensors(ds, cpu), loss_fn,
                                    lambda m: build_optimizer(cfg.optim, m, loss_fn))
        assert (got.steps, got.stop_reason, got.target_step) == (ref.steps, ref.stop_reason, ref.target_step)
        assert [r["train_acc"] for r in got.curves] == [r["train_acc"] for r in ref.curves]
        assert [r["test_acc"] for r in got.curves] == [r["test_acc"] for r in ref.curves]
        for a, b in zip(got.curves, ref.curves):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        x = torch.as_tensor(ds.x_test, dtype=torch.float32)
        with torch.no_grad():
            z_ref, z_got = ref.model(x), got.model(x)
        assert z_got.shape == (len(x), 1)
        torch.testing.assert_close(z_got, z_ref, rtol=1e-4, atol=1e-4 * float(z_ref.abs().max()))


def test_cross_entropy_and_the_sigmoid_head_are_not_stacked_together():
    """The loss is part of a stack's shape: a grid over the loss gives one stack per loss."""
    spec = TINY_STACK | {"grid": {"loss": ["cross_entropy", "binary_cross_entropy"]}}
    stacks, alone, _ = plan_stacks(expand(parse_spec(spec, "tiny.toml")))
    assert not alone and sorted(tuple({p.config.loss for p in s}) for s in stacks) == [
        ("binary_cross_entropy",), ("cross_entropy",)]


def test_cross_entropy_runs_keep_their_two_logits():
    cfg = run_config_from_dict(PAPER_002 | {"loss": "cross_entropy"})
    ds = load_dataset(cfg.data, cfg.data_seed)
    model = build_model(cfg.model, ds.input_shape, output_dim(cfg.loss, ds.num_classes), cfg.seed)
    assert model(torch.zeros(3, *ds.input_shape)).shape == (3, 2)
