"""Model zoo for the flatness/generalization experiments (papers 000, 002, 004).

Every model is a plain ``nn.Sequential`` (possibly nested) built from standard torch layers, so
``torch.func.functional_call`` works on it and :func:`layers_in_order` recovers the Linear/Conv2d
layers in forward order (used by weight norms and the alpha-scaling reparametrisation).

Input shapes: ``(D,)`` for vector data (mnist1d, boolean, flattened images), ``(C, H, W)`` or ``(H, W)``
for images. Image models reshape ``(N, H, W)`` batches to ``(N, 1, H, W)`` themselves; fully connected
models flatten whatever they receive.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from collect.config import ARCHS, ModelConfig, SpecError

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int, seed: int) -> nn.Module:
    """Build ``cfg.arch`` for inputs of ``input_shape`` and ``num_classes`` outputs, initialised from ``seed``.

    The caller's global RNG state is left untouched (``torch.random.fork_rng``). With ``cfg.init_sigma_w``
    set, every Linear/Conv2d weight is drawn from N(0, σ_w²/fan_in) and every bias from N(0, σ_b²)
    (σ_b = ``cfg.init_sigma_b``, 0 when unset): the NNGP parametrisation of paper 002 (section 5.1,
    σ_w = 1.0, σ_b = 0.1), so that the trained network and its NNGP prior (log volume) agree. Otherwise
    PyTorch's default initialisation is kept. The model is built on the CPU; move it with ``.to(device)``.
    """
    input_shape = tuple(int(s) for s in input_shape)
    if cfg.arch not in _BUILDERS:
        raise SpecError(f"model.arch = {cfg.arch!r} is not a known architecture; use one of {', '.join(ARCHS)}")
    if cfg.activation not in _ACTIVATIONS:
        raise SpecError(
            f"model.activation = {cfg.activation!r} is not supported; use one of {', '.join(_ACTIVATIONS)}"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes = {num_classes} must be >= 1")
    if not input_shape or any(s < 1 for s in input_shape):
        raise ValueError(f"input_shape = {input_shape} must be a non-empty tuple of positive sizes")
    if cfg.init_sigma_b is not None and cfg.init_sigma_w is None:
        raise SpecError(
            "model.init_sigma_b is set but model.init_sigma_w is not; set both for the NNGP initialisation "
            "or neither for PyTorch's default"
        )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _BUILDERS[cfg.arch](cfg, input_shape, num_classes)
        if cfg.init_sigma_w is not None:
            nngp_init_(model, cfg.init_sigma_w, cfg.init_sigma_b or 0.0)
    return model


def layers_in_order(model: nn.Module) -> list[nn.Module]:
    """The Linear and Conv2d layers of ``model`` in forward order (registration order of the Sequential)."""
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


@torch.no_grad()
def nngp_init_(model: nn.Module, sigma_w: float, sigma_b: float) -> None:
    """In place: weights ~ N(0, σ_w²/fan_in), biases ~ N(0, σ_b²) for every Linear/Conv2d (paper 002 §5.1)."""
    if sigma_w <= 0 or sigma_b < 0:
        raise SpecError(
            f"model.init_sigma_w = {sigma_w} must be > 0 and model.init_sigma_b = {sigma_b} must be >= 0"
        )
    for layer in layers_in_order(model):
        fan_in = layer.weight[0].numel()  # in_features, or in_channels * kh * kw
        layer.weight.normal_(0.0, sigma_w / math.sqrt(fan_in))
        if layer.bias is not None and sigma_b > 0:
            layer.bias.normal_(0.0, sigma_b)
        elif layer.bias is not None:
            layer.bias.zero_()


# ---------------------------------------------------------------------------------------------- builders


def _mlp_layers(cfg: ModelConfig, in_features: int, widths: list[int], num_classes: int) -> list[nn.Module]:
    """Linear → (BatchNorm1d) → activation → (Dropout) for each hidden width, then Linear(num_classes)."""
    layers: list[nn.Module] = []
    d = in_features
    for w in widths:
        layers.append(nn.Linear(d, w))
        if cfg.batch_norm:
            layers.append(nn.BatchNorm1d(w))
        layers.append(_ACTIVATIONS[cfg.activation]())
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        d = w
    layers.append(nn.Linear(d, num_classes))
    return layers


def _affine(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Multinomial logistic regression f(x) = Wx + b, the affine model of paper 000 (exact ACEHT)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))


def _fcn(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """``cfg.depth`` hidden layers of ``cfg.width`` units (paper 002: two layers of 40 ReLUs); depth 0 is affine."""
    hidden = [cfg.width] * cfg.depth
    return nn.Sequential(nn.Flatten(), *_mlp_layers(cfg, math.prod(input_shape), hidden, num_classes))


def _fcn_bn(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """FCN-BN of paper 000 appendix A.1 (after Keskar et al.'s F1): three batch-normalised ReLU layers.

    The paper does not give the hidden width; it is ``cfg.width`` (Keskar et al.'s F1 used 512).
    Depth (3) and batch norm (on) are fixed by the paper, so ``cfg.depth``/``cfg.batch_norm`` are not used;
    ``cfg.activation`` (ReLU in the paper) and ``cfg.dropout`` are honoured.
    """
    bn_cfg = ModelConfig(arch="fcn", width=cfg.width, depth=3, activation=cfg.activation, batch_norm=True,
                         dropout=cfg.dropout)
    return _fcn(bn_cfg, input_shape, num_classes)


def _image_shape(cfg: ModelConfig, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) for a convolutional model, or a SpecError saying what to use instead."""
    if len(input_shape) == 1:
        raise SpecError(
            f"model.arch = {cfg.arch!r} is convolutional but the data are 1-D vectors of shape {input_shape} "
            "(e.g. mnist1d or boolean); use model.arch = 'fcn' or 'affine'"
        )
    if len(input_shape) == 2:
        return (1, *input_shape)
    if len(input_shape) == 3:
        c, h, w = input_shape
        if c > 4 and w in (1, 3):
            raise SpecError(
                f"model.arch = {cfg.arch!r}: input shape {input_shape} looks channels-last; "
                "the data must be given as (C, H, W)"
            )
        return c, h, w
    raise SpecError(f"model.arch = {cfg.arch!r} needs (C, H, W) or (H, W) images, got input shape {input_shape}")


def _to_image(input_shape: tuple[int, ...]) -> list[nn.Module]:
    """Reshape (N, H, W) batches to (N, 1, H, W); (C, H, W) inputs need nothing."""
    return [nn.Unflatten(1, (1, input_shape[0]))] if len(input_shape) == 2 else []


def _flat_size(features: nn.Module, chw: tuple[int, int, int], arch: str) -> int:
    """Number of features after ``features`` on one dummy input (no RNG use; BN in eval mode)."""
    was_training = features.training
    features.eval()
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, *chw))
    except RuntimeError as exc:
        raise SpecError(f"model.arch = {arch!r} cannot run on {chw} images: {exc}") from None
    finally:
        features.train(was_training)
    return out[0].numel()


def _conv_block(cfg: ModelConfig, c_in: int, c_out: int, kernel: int, padding: int) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, padding=padding)]
    if cfg.batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(_ACTIVATIONS[cfg.activation]())
    return layers


def _lenet5(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998), as used in paper 000 (MNIST, CIFAR-10).

    conv6 5x5 (pad 2) → act → maxpool2 → conv16 5x5 → act → maxpool2 → fc120 → act → fc84 → act → fc K,
    with optional BatchNorm after every conv/fc hidden layer and dropout after the fc hidden activations.
    28x28 gives 16·5·5 features, 32x32 gives 16·6·6. Small inputs: when the map after the first pool is
    narrower than 5 (e.g. 8x8 digits → 4x4) the second conv is padded by 2 ("same") so it still applies,
    giving 16·2·2 features for 8x8. Inputs smaller than 4x4 are rejected.
    """
    c, h, w = _image_shape(cfg, input_shape)
    if min(h, w) < 4:
        raise SpecError(f"model.arch = 'lenet5' needs images of at least 4x4, got {h}x{w}; use 'fcn' instead")
    pad2 = 2 if min(h, w) // 2 < 5 else 0
    features = nn.Sequential(
        *_conv_block(cfg, c, 6, 5, 2),
        nn.MaxPool2d(2),
        *_conv_block(cfg, 6, 16, 5, pad2),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    n_features = _flat_size(features, (c, h, w), "lenet5")
    head = nn.Sequential(*_mlp_layers(cfg, n_features, [120, 84], num_classes))
    return nn.Sequential(*_to_image(input_shape), features, head)


_VGG_MAX_MULTIPLIER = 8  # VGG caps channels at 8x the first block (64 → 512)


def _vgg(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A small VGG (Simonyan & Zisserman 2015), the kind of CNN paper 004 trains.

    ``cfg.depth`` blocks; block i has conv3x3 with ``cfg.width · 2^i`` channels (capped at 8·width),
    (BatchNorm2d), activation, repeated once for blocks 0-1 and twice from block 2 on (the VGG-A/VGG-11
    pattern), then maxpool 2 while the map is at least 2 pixels wide (so 8x8 inputs work at any depth).
    Then global average pooling, dropout(``cfg.dropout``) and Linear(K).
    """
    c, h, w = _image_shape(cfg, input_shape)
    if cfg.depth < 1:
        raise SpecError("model.depth = 0: arch 'vgg' needs at least one conv block (e.g. depth = 3)")
    layers: list[nn.Module] = [*_to_image(input_shape)]
    c_in, size = c, min(h, w)
    for i in range(cfg.depth):
        c_out = cfg.width * min(2**i, _VGG_MAX_MULTIPLIER)
        for _ in range(1 if i < 2 else 2):
            layers += _conv_block(cfg, c_in, c_out, 3, 1)
            c_in = c_out
        if size >= 2:
            layers.append(nn.MaxPool2d(2))
            size //= 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if cfg.dropout > 0:
        layers.append(nn.Dropout(cfg.dropout))
    layers.append(nn.Linear(c_in, num_classes))
    return nn.Sequential(*layers)


_BUILDERS: dict[str, Callable[[ModelConfig, tuple[int, ...], int], nn.Module]] = {
    "affine": _affine,
    "fcn": _fcn,
    "fcn_bn": _fcn_bn,
    "lenet5": _lenet5,
    "vgg": _vgg,
}
