"""Reparametrisations: alpha scaling keeps every output and margin and moves the Hessian measures; last-layer
scaling multiplies the logits by α and flattens a network that classifies every point correctly."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from collect.config import ModelConfig
from collect.hessian.per_sample import margins
from collect.losses import cross_entropy
from collect.models import build_model
from collect.transforms import alpha_scale, last_layer_scale
from tests.collect.hessian.tiny_nets import (  # noqa: F401 (single_thread is an autouse fixture)
    bn_net,
    cached_hessian,
    conv_net,
    dense_hessian,
    image_data,
    relu_net,
    single_thread,
    tanh_net,
    vector_data,
)


@pytest.mark.parametrize("layer", [0, 1, -2])
def test_alpha_scale_keeps_outputs_and_margins_and_moves_the_hessian(layer):
    model = relu_net()
    x, y = vector_data()
    scaled = alpha_scale(model, 7.0, layer)
    # Float64: ReLU(αz)/α = ReLU(z) up to two roundings, so outputs agree to ~1e-15 relative.
    torch.testing.assert_close(scaled(x), model(x), rtol=1e-12, atol=1e-12)
    for a, b in zip(margins(scaled(x), y), margins(model(x), y)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    h0 = cached_hessian("relu")
    h1 = dense_hessian(scaled, cross_entropy, x, y)
    # The loss is the same function of the outputs, yet the trace and λ_max change by large factors (the W_{i+1}
    # block scales by α² = 49 and the W_i block by 1/α²).
    assert float(torch.trace(h1)) > 3 * float(torch.trace(h0))
    assert float(torch.linalg.eigvalsh(h1)[-1]) > 3 * float(torch.linalg.eigvalsh(h0)[-1])
    # The input model is untouched and the scaled one holds exactly the transformed weights.
    i = layer % 3
    lin = [m for m in model if isinstance(m, nn.Linear)]
    lin_s = [m for m in scaled if isinstance(m, nn.Linear)]
    torch.testing.assert_close(lin_s[i].weight, 7.0 * lin[i].weight)
    torch.testing.assert_close(lin_s[i].bias, 7.0 * lin[i].bias)
    torch.testing.assert_close(lin_s[i + 1].weight, lin[i + 1].weight / 7.0)
    torch.testing.assert_close(lin_s[i + 1].bias, lin[i + 1].bias)


def test_alpha_scale_through_conv_maxpool_and_project_models():
    x, _ = image_data()
    model = conv_net()
    torch.testing.assert_close(alpha_scale(model, 0.2, 0)(x), model(x), rtol=1e-12, atol=1e-12)
    lenet = build_model(ModelConfig(arch="lenet5"), (12, 12), 10, seed=0).double().eval()
    imgs = torch.randn(4, 12, 12, dtype=torch.float64)
    for layer in range(4):
        torch.testing.assert_close(alpha_scale(lenet, 3.0, layer)(imgs), lenet(imgs), rtol=1e-11, atol=1e-12)


def test_alpha_scale_refuses_function_changing_cases():
    with pytest.raises(ValueError, match="batch norm"):
        alpha_scale(bn_net(), 2.0, 0)
    with pytest.raises(ValueError, match="Tanh"):
        alpha_scale(tanh_net(), 2.0, 0)
    with pytest.raises(ValueError, match="alpha_layer = 2"):
        alpha_scale(relu_net(), 2.0, 2)  # the last layer has no following layer
    with pytest.raises(ValueError, match="> 0"):
        alpha_scale(relu_net(), -1.0, 0)
    linear_stack = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    with pytest.raises(ValueError, match="not followed by a ReLU"):
        alpha_scale(linear_stack, 2.0, 0)


def test_last_layer_scale_multiplies_logits_and_flattens_a_perfect_classifier():
    """Paper 000 Prop. 5.1 / Cor. 5.2: f(T_α θ) = α f(θ); when every point is classified correctly the Hessian of
    the cross-entropy goes to 0 as α → ∞. The statement is a limit: at this random initialisation the margins are
    small, so moderate α first *sharpens* the network (trace 1.2 → 8.7 at α = 16) before the softmax saturates
    (trace 2e-3 at α = 256, 1e-21 at α = 1024)."""
    model = relu_net()
    x, _ = vector_data()
    with torch.no_grad():
        y = model(x).argmax(1)  # labels the network gets right: full training accuracy
    traces, tops = [], []
    for alpha in (1.0, 16.0, 256.0, 1024.0):
        scaled = last_layer_scale(model, alpha)
        torch.testing.assert_close(scaled(x), alpha * model(x), rtol=1e-12, atol=1e-12)
        assert torch.equal(scaled(x).argmax(1), y)
        h = dense_hessian(scaled, cross_entropy, x, y)
        traces.append(float(torch.trace(h)))
        tops.append(float(torch.linalg.eigvalsh(h)[-1]))
    assert traces[1] > traces[0]  # not monotone: a limit statement
    assert traces[2] < 1e-2 * traces[0] and traces[3] < 1e-12 * traces[0]
    assert tops[3] < 1e-12 * tops[0]
    with pytest.raises(ValueError, match="follows the last layer"):
        last_layer_scale(nn.Sequential(nn.Linear(3, 2), nn.Tanh()), 2.0)
    with pytest.raises(ValueError, match="> 0"):
        last_layer_scale(model, 0.0)


# --- transform.at_epoch: the transform applied mid-training (paper 002 figure 5) ----------------------------------


def _mid_training_run(at_epoch: int | None, alpha: float = 4.0, epochs: int = 5):
    """Train a ReLU net on two noisy blobs (64 points, batch 16: 4 steps per epoch), alpha-scaling layer 0 at the
    end of epoch ``at_epoch``. Returns the result, the step count at each transform call with the weights it was
    given (copies), and every (step, weights) seen by ``on_eval`` (it runs right after the transform, then at the
    end of every epoch)."""
    from collect.config import run_config_from_dict
    from collect.optim import build_optimizer
    from collect.train import TensorData, train

    g = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 2
    x = torch.randn(64, 4, generator=g) + (y[:, None].float() * 2 - 1) * 0.5
    data = TensorData(x, y, x[:16].clone(), y[:16].clone(), torch.zeros(64, dtype=torch.bool))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    cfg = run_config_from_dict({"optim": {"lr": 0.2, "batch_size": 16}, "stop": {"max_epochs": epochs}})
    steps = [0]
    calls: list[tuple[int, nn.Module]] = []
    seen: list[tuple[int, list[torch.Tensor]]] = []

    def build_step(m):
        inner = build_optimizer(cfg.optim, m, cross_entropy)

        def step(sampler):
            steps[0] += 1
            return inner(sampler)

        return step

    def transform(m: nn.Module) -> nn.Module:
        calls.append((steps[0], copy.deepcopy(m)))
        return alpha_scale(m, alpha, 0)

    def on_eval(m: nn.Module, step: int) -> dict[str, float]:
        seen.append((step, [p.detach().clone() for p in m.parameters()]))
        return {}

    result = train(cfg, model, data, cross_entropy, build_step, on_eval=on_eval, progress=False,
                   transform_at=(at_epoch, transform) if at_epoch else None)
    return result, calls, seen, data


def test_transform_at_epoch_scales_the_weights_mid_training_and_keeps_the_outputs():
    """At the end of epoch 2 (step 8) the weights become (4 W_0, 4 b_0, W_1 / 4, b_1) of the step-8 iterate, the
    network's losses and accuracies at that step are those of the untransformed iterate, and training continues
    from the scaled weights (SGD is not invariant to the reparametrisation, so the trajectory changes)."""
    from collect.train import evaluate

    result, calls, seen, data = _mid_training_run(at_epoch=2)
    control, _, control_seen, _ = _mid_training_run(at_epoch=None)
    assert len(calls) == 1 and calls[0][0] == 8  # once, at the end of epoch 2 (4 steps per epoch)
    before = calls[0][1]
    # The transform received the same iterate an untransformed run has at step 8.
    control_at_8 = dict(control_seen)[8]
    for p, q in zip(before.parameters(), control_at_8):
        torch.testing.assert_close(p.detach(), q, rtol=0, atol=0)
    # Right after the transform (first on_eval call at step 8) the live model holds exactly the scaled weights.
    after = next(w for s, w in seen if s == 8)
    w0, b0, w1, b1 = (p.detach() for p in before.parameters())
    for got, want in zip(after, (4.0 * w0, 4.0 * b0, w1 / 4.0, b1)):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    # The curve row marked 'transformed' is at step 8 and reports the outputs of the untransformed iterate
    # (float32: ReLU(4z)/4 = ReLU(z) up to rounding, so losses agree to ~1e-6 relative).
    rows = [r for r in result.curves if r.get("transformed") == 1.0]
    assert len(rows) == 1 and rows[0]["step"] == 8
    for xs, ys, key in ((data.x_train, data.y_train, "train"), (data.x_test, data.y_test, "test")):
        loss, acc = evaluate(before, xs, ys, cross_entropy)
        assert rows[0][f"{key}_loss"] == pytest.approx(loss, rel=1e-5) and rows[0][f"{key}_acc"] == acc
    # Training went on from the scaled weights: the final layer-0 weights are far from the control's.
    final, final_control = result.model[0].weight.detach(), control.model[0].weight.detach()
    assert float((final - final_control).abs().max()) > 0.5
    assert not any(r.get("transformed") for r in control.curves)


def test_transform_at_epoch_through_the_runner(mlflow_uri, tmp_path):
    """``transform.at_epoch`` in a sweep spec reaches the training loop: the logged curve has the transformed row at
    the end of epoch 2 with the same train loss as the run without alpha scaling (same function), after which the
    two runs' curves part."""
    import json

    from mlflow import MlflowClient

    from collect.runner import run_sweep
    from collect.sweep import expand, parse_spec

    spec = {
        "name": "mid-transform", "seeds": [0], "measures": [],
        "base": {
            "data": {"dataset": "digits", "n_train": 60, "n_test": 40},
            "model": {"arch": "fcn", "width": 16, "depth": 1},
            "optim": {"lr": 0.1, "batch_size": 20},  # 3 steps per epoch
            "stop": {"max_epochs": 4},
            "transform": {"at_epoch": 2},
        },
        "grid": {"transform.alpha_scale": [1.0, 5.0]},
    }
    summary = run_sweep(expand(parse_spec(spec, "mid.toml")), sweep="mid-transform", tracking_uri=mlflow_uri,
                        device="cpu", progress=False)
    assert summary.finished == 2
    client = MlflowClient(tracking_uri=mlflow_uri)
    curves = {}
    for o in summary.outcomes:
        alpha = float(client.get_run(o.run_id).data.params["transform.alpha_scale"])
        path = client.download_artifacts(o.run_id, "curves.json", str(tmp_path))
        curves[alpha] = json.loads(open(path).read())
    scaled, plain = curves[5.0], curves[1.0]
    marked = [r for r in scaled if r.get("transformed") == 1.0]
    assert [r["step"] for r in marked] == [6]
    plain_at_6 = next(r for r in plain if r["step"] == 6)
    assert marked[0]["train_loss"] == pytest.approx(plain_at_6["train_loss"], rel=1e-5)
    assert abs(scaled[-1]["train_loss"] - plain[-1]["train_loss"]) > 1e-3
