"""Tests for collect.models: shapes on every supported input, seeded init, NNGP init variance, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from collect.config import ModelConfig, SpecError
from collect.models import build_model, layers_in_order

IMAGE_SHAPES = [(1, 28, 28), (3, 32, 32), (1, 8, 8), (8, 8)]
VECTOR_SHAPES = [(40,), (784,)]
ALL_ARCHS = ["affine", "fcn", "fcn_bn", "lenet5", "vgg"]
SMALL = dict(width=8, depth=3)


@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize("shape", IMAGE_SHAPES)
@pytest.mark.parametrize("batch_norm,dropout", [(False, 0.0), (True, 0.3)])
def test_forward_shape_on_images(arch, shape, batch_norm, dropout):
    model = build_model(ModelConfig(arch=arch, batch_norm=batch_norm, dropout=dropout, **SMALL), shape, 7, seed=0)
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", ["affine", "fcn", "fcn_bn"])
@pytest.mark.parametrize("shape", VECTOR_SHAPES)
def test_fully_connected_models_take_vectors(arch, shape):
    model = build_model(ModelConfig(arch=arch, **SMALL), shape, 2, seed=0)
    assert model(torch.randn(3, *shape)).shape == (3, 2)


@pytest.mark.parametrize("arch", ["lenet5", "vgg"])
def test_cnn_on_vectors_says_use_fcn(arch):
    with pytest.raises(SpecError, match="fcn"):
        build_model(ModelConfig(arch=arch), (40,), 10, seed=0)


def test_unknown_arch_lists_choices():
    with pytest.raises(SpecError) as info:
        build_model(ModelConfig(arch="resnet"), (1, 28, 28), 10, seed=0)
    for arch in ALL_ARCHS:
        assert arch in str(info.value)


def test_channels_last_is_rejected():
    with pytest.raises(SpecError, match=r"\(C, H, W\)"):
        build_model(ModelConfig(arch="lenet5"), (32, 32, 3), 10, seed=0)


def test_sigma_b_without_sigma_w_is_an_error():
    with pytest.raises(SpecError, match="init_sigma_w"):
        build_model(ModelConfig(init_sigma_b=0.1), (5,), 2, seed=0)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_same_seed_same_params_and_global_rng_untouched(arch):
    cfg = ModelConfig(arch=arch, **SMALL)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = build_model(cfg, (1, 28, 28), 10, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    b = build_model(cfg, (1, 28, 28), 10, seed=5)
    c = build_model(cfg, (1, 28, 28), 10, seed=6)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_nngp_init_variance_fcn():
    sigma_w, sigma_b = 1.5, 0.3
    cfg = ModelConfig(arch="fcn", width=512, depth=2, init_sigma_w=sigma_w, init_sigma_b=sigma_b)
    model = build_model(cfg, (784,), 10, seed=0)
    for layer in layers_in_order(model):
        fan_in = layer.weight.shape[1]
        n_w = layer.weight.numel()
        # Sample variance of n iid Gaussians has relative standard error sqrt(2/n); allow 5 standard errors.
        tol_w = 5 * math.sqrt(2 / n_w)
        assert layer.weight.var().item() == pytest.approx(sigma_w**2 / fan_in, rel=tol_w)
        assert abs(layer.weight.mean().item()) < 5 * sigma_w / math.sqrt(fan_in * n_w)
        n_b = layer.bias.numel()
        tol_b = 5 * math.sqrt(2 / n_b)  # 10 biases in the last layer: very loose, but still rejects σ vs σ² mix-ups
        assert layer.bias.var().item() == pytest.approx(sigma_b**2, rel=tol_b)


def test_nngp_init_conv_uses_channel_times_kernel_fan_in_and_zero_bias_by_default():
    sigma_w = 2.0
    model = build_model(ModelConfig(arch="vgg", width=32, depth=2, init_sigma_w=sigma_w), (3, 32, 32), 10, seed=1)
    conv = [m for m in layers_in_order(model) if isinstance(m, nn.Conv2d)][1]  # 32 → 64 channels, 3x3
    fan_in = 32 * 3 * 3
    n = conv.weight.numel()
    assert conv.weight.var().item() == pytest.approx(sigma_w**2 / fan_in, rel=5 * math.sqrt(2 / n))
    assert torch.count_nonzero(conv.bias) == 0  # init_sigma_b unset: N(0, 0)


@pytest.mark.parametrize(
    "shape,features", [((1, 28, 28), 16 * 5 * 5), ((3, 32, 32), 16 * 6 * 6), ((8, 8), 16 * 2 * 2)]
)
def test_lenet5_flatten_size_matches_hand_arithmetic(shape, features):
    # 28: conv(pad 2) 28 → pool 14 → conv 10 → pool 5; 32: 32 → 16 → 12 → 6; 8: 8 → 4 → conv(pad 2) 4 → 2.
    model = build_model(ModelConfig(arch="lenet5"), shape, 10, seed=0)
    widths = [(m.in_features, m.out_features) for m in layers_in_order(model) if isinstance(m, nn.Linear)]
    assert widths == [(features, 120), (120, 84), (84, 10)]


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_layers_in_order_matches_forward_call_order(arch):
    model = build_model(ModelConfig(arch=arch, batch_norm=True, **SMALL), (3, 32, 32), 10, seed=0)
    called: list[nn.Module] = []
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.register_forward_hook(lambda mod, inp, out: called.append(mod))
    model(torch.randn(2, 3, 32, 32))
    assert [id(m) for m in layers_in_order(model)] == [id(m) for m in called]


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_functional_call_reproduces_forward(arch):
    model = build_model(ModelConfig(arch=arch, batch_norm=True, dropout=0.2, **SMALL), (1, 28, 28), 10, seed=0).eval()
    x = torch.randn(3, 1, 28, 28)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    torch.testing.assert_close(functional_call(model, params, (x,)), model(x))


def test_fcn_structure_batch_norm_dropout_and_activation():
    cfg = ModelConfig(arch="fcn", width=16, depth=3, activation="tanh", batch_norm=True, dropout=0.5)
    model = build_model(cfg, (1, 8, 8), 4, seed=0)
    kinds = [type(m) for m in model.modules() if not isinstance(m, nn.Sequential)]
    block = [nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Dropout]
    assert kinds == [nn.Flatten, *block * 3, nn.Linear]
    x = torch.randn(8, 1, 8, 8)
    model.eval()
    assert torch.equal(model(x), model(x))  # dropout off in eval
    model.train()
    assert not torch.equal(model(x), model(x))  # p = 0.5 on 16 units: masks differ


def test_fcn_depth_zero_is_affine_and_fcn_bn_has_three_bn_layers():
    fcn0 = build_model(ModelConfig(arch="fcn", depth=0), (1, 8, 8), 3, seed=0)
    affine = build_model(ModelConfig(arch="affine"), (1, 8, 8), 3, seed=0)
    assert [p.shape for p in fcn0.parameters()] == [p.shape for p in affine.parameters()]
    bn = build_model(ModelConfig(arch="fcn_bn", width=32, depth=1), (784,), 10, seed=0)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in bn.modules()) == 3
    assert [m.out_features for m in layers_in_order(bn)] == [32, 32, 32, 10]
