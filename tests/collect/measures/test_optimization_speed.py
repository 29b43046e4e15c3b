"""Optimization-speed measures from the logged training curves, end to end through a sweep, and the gradient-noise
variance against per-minibatch gradients computed one at a time with ``backward()``."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from collect import tracking
from collect.config import OptimConfig, RunConfig
from collect.measures.context import MeasureSkipped
from collect.runner import run_sweep
from collect.sweep import expand, parse_spec
from tests.collect.hessian.tiny_nets import relu_net, single_thread, vector_data  # noqa: F401
from tests.collect.measures.test_curvature import ctx_for, run


def test_steps_are_read_from_the_first_logged_crossing():
    x, y = vector_data()
    curves = [
        {"step": 10, "train_loss": 0.9}, {"step": 20, "train_loss": 0.1}, {"step": 30, "train_loss": 0.05},
        {"step": 40, "train_loss": 0.011}, {"step": 50, "train_loss": 0.004}, {"step": 50, "train_loss": 0.0, "swa": 1.0},
    ]
    ctx = replace(ctx_for(relu_net(), x, y), curves=curves)
    got = run("optimization_speed", ctx).values
    assert got["steps_to_loss_0p1"] == 20 and got["steps_loss_0p1_to_0p01"] == 30
    assert got["curve_eval_every"] == 10 and got["steps_to_loss_0p01_reached"] == 1.0

    never = replace(ctx, curves=[{"step": 10, "train_loss": 0.5}, {"step": 20, "train_loss": 0.05}, {"step": 30, "train_loss": 0.0, "swa": 1.0}])
    got = run("optimization_speed", never).values
    assert got["steps_to_loss_0p1"] == 20 and math.isnan(got["steps_loss_0p1_to_0p01"])
    assert got["steps_to_loss_0p01_reached"] == 0.0

    with pytest.raises(MeasureSkipped, match="cross-entropy"):
        run("optimization_speed", replace(ctx, config=RunConfig(loss="mse")))
    with pytest.raises(MeasureSkipped, match="curves"):
        run("optimization_speed", replace(ctx, curves=None))


def test_the_runner_hands_the_logged_curves_to_the_measure(mlflow_uri):
    spec = {
        "name": "speed",
        "seeds": [0],
        "measures": ["optimization_speed"],
        "base": {
            "data": {"dataset": "digits", "n_train": 60, "n_test": 40},
            "model": {"arch": "fcn", "width": 32, "depth": 1},
            "optim": {"lr": 0.5, "batch_size": 20},
            "stop": {"max_epochs": 60},
        },
    }
    summary = run_sweep(expand(parse_spec(spec, "speed.toml")), sweep="speed", tracking_uri=mlflow_uri, device="cpu", progress=False)
    assert summary.finished == 1
    client = MlflowClient(tracking_uri=mlflow_uri)
    kid = tracking.child_runs(client, client.get_experiment_by_name("speed").experiment_id)[0]
    history = sorted(client.get_metric_history(kid.info.run_id, "curve/train_loss"), key=lambda m: m.step)
    first = {t: next((m.step for m in history if m.value <= t), None) for t in (0.1, 0.01)}
    assert first[0.1] is not None and first[0.01] is not None, "the tiny run should reach both thresholds"
    metrics = kid.data.metrics
    assert metrics["measure/steps_to_loss_0p1"] == first[0.1]
    assert metrics["measure/steps_loss_0p1_to_0p01"] == first[0.01] - first[0.1]


def test_grad_noise_matches_minibatch_gradients_one_at_a_time():
    x, y = vector_data(n=40)
    model = relu_net(2)
    base = ctx_for(model, x, y, seed=4)
    ctx = replace(base, config=replace(base.config, optim=OptimConfig(batch_size=8)))
    got = run("grad_noise", ctx).values
    # the same seeded partition, gradients by backward() one minibatch at a time
    order = torch.randperm(40, generator=torch.Generator().manual_seed(4 * 31 + 5))[:40]
    grads = []
    for k in range(5):
        idx = order[8 * k : 8 * (k + 1)]
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        grads.append(np.concatenate([p.grad.numpy().ravel() for p in model.parameters()]))
    g = np.array(grads)
    assert got["grad_noise_n_batches"] == 5
    assert got["grad_noise_variance"] == pytest.approx(((g - g.mean(0)) ** 2).sum(1).mean(), rel=1e-10)
    full = replace(ctx, config=replace(ctx.config, optim=OptimConfig(optimizer="gd")))
    assert run("grad_noise", full).values["grad_noise_variance"] == pytest.approx(0.0, abs=1e-20)
