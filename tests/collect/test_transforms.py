"""Reparametrisations: alpha scaling keeps every output and margin and moves the Hessian measures; last-layer
scaling multiplies the logits by α and flattens a network that classifies every point correctly."""

from __future__ import annotations

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
