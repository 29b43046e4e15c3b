"""Reparametrisations applied to a trained model before measuring, to show which measures move when the function
does not (alpha scaling) or when only the scale of the outputs does (last-layer scaling).

Both return a new model (a deep copy); the input model is left untouched. Layers are the Linear/Conv layers in
forward order (``collect.models.layers_in_order``: registration order of the Sequential models of this project);
what lies between two layers is read from the leaf modules in the same order.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from collect.models import layers_in_order

_BATCH_NORM = nn.modules.batchnorm._BatchNorm
# Leaves that commute with multiplication by a positive scalar: f(αz) = αf(z) for α > 0.
_POSITIVELY_HOMOGENEOUS = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Dropout,
)
# Leaves that are linear (f(αz) = αf(z) for every α): allowed after the last layer.
_LINEAR = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)


def alpha_scale(model: nn.Module, alpha: float, layer: int) -> nn.Module:
    """(W_i, b_i, W_{i+1}) → (αW_i, αb_i, W_{i+1}/α) for i = ``layer`` (paper 002, appendix C; Dinh et al. 2017).

    With a ReLU between layer i and layer i+1, ReLU(αz) = αReLU(z) for α > 0, so the network computes exactly the
    same function while its curvature changes: the Hessian block of W_i shrinks by 1/α², that of W_{i+1} grows by α².
    Raises ValueError when the scaling would change the function: α ≤ 0, no layer i+1, no ReLU between the two
    layers, a non-homogeneous layer (tanh, …) between them, or batch norm between them (it would renormalise αz).
    """
    if not alpha > 0:
        raise ValueError(f"transform.alpha_scale = {alpha} must be > 0 (ReLU is only positively homogeneous)")
    new = copy.deepcopy(model)
    layers = layers_in_order(new)
    n = len(layers)
    i = layer + n if layer < 0 else layer
    if not 0 <= i <= n - 2:
        raise ValueError(
            f"transform.alpha_layer = {layer}: the model has {n} Linear/Conv layers, so alpha scaling needs a "
            f"layer index in 0..{n - 2} (a layer followed by another one; negative indices count from the end)"
        )
    between = _leaves_between(new, layers[i], layers[i + 1])
    for name, m in between:
        if isinstance(m, _BATCH_NORM):
            raise ValueError(
                f"transform.alpha_layer = {layer}: batch norm '{name}' sits between layer {i} and layer {i + 1}, "
                "so alpha scaling would not preserve the function; choose a layer without batch norm after it "
                "or a model with model.batch_norm = false"
            )
        if not isinstance(m, _POSITIVELY_HOMOGENEOUS):
            raise ValueError(
                f"transform.alpha_layer = {layer}: '{name}' ({type(m).__name__}) between layer {i} and layer {i + 1} "
                "is not positively homogeneous, so alpha scaling would change the function; use a ReLU network "
                "(model.activation = 'relu')"
            )
    if not any(isinstance(m, (nn.ReLU, nn.LeakyReLU)) for _, m in between):
        raise ValueError(
            f"transform.alpha_layer = {layer}: layer {i} is not followed by a ReLU before layer {i + 1}; "
            "alpha scaling applies to a ReLU layer"
        )
    with torch.no_grad():
        layers[i].weight.mul_(alpha)
        if layers[i].bias is not None:
            layers[i].bias.mul_(alpha)
        layers[i + 1].weight.div_(alpha)
    return new


def last_layer_scale(model: nn.Module, alpha: float) -> nn.Module:
    """Multiply the last layer's weight and bias by α, so f(T_α θ, x) = α f(θ, x) (paper 000, Prop. 5.1).

    This is the transform T_α of the proposition, of which the paper says "scaling the last layer is one simple
    instance": the logits are multiplied by α, so predictions, the ordering of the outputs and the sign of every
    margin are unchanged, output margins scale by α, and — at full training accuracy with unique argmaxes — every
    entry of the cross-entropy Hessian goes to 0 as α → ∞ (Corollary 5.2): the network becomes arbitrarily flat
    while classifying exactly as before. It is *not* function-preserving on the logits (unlike ``alpha_scale``);
    the paper does not pair it with a compensating 1/α on an earlier layer, which would undo the effect.
    Raises ValueError for α ≤ 0 or when anything but a reshape/identity follows the last layer.
    """
    if not alpha > 0:
        raise ValueError(f"transform.last_layer_scale = {alpha} must be > 0 (a negative factor flips the predictions)")
    new = copy.deepcopy(model)
    layers = layers_in_order(new)
    if not layers:
        raise ValueError("last_layer_scale: the model has no Linear/Conv layer to scale")
    after = _leaves_between(new, layers[-1], None)
    for name, m in after:
        if not isinstance(m, _LINEAR):
            raise ValueError(
                f"transform.last_layer_scale: '{name}' ({type(m).__name__}) follows the last layer, so scaling it "
                "would not multiply the outputs by α; the last layer must produce the logits"
            )
    with torch.no_grad():
        layers[-1].weight.mul_(alpha)
        if layers[-1].bias is not None:
            layers[-1].bias.mul_(alpha)
    return new


def _leaves_between(model: nn.Module, first: nn.Module, second: nn.Module | None) -> list[tuple[str, nn.Module]]:
    """Leaf modules strictly after ``first`` and before ``second`` (to the end when None), in registration order."""
    out: list[tuple[str, nn.Module]] = []
    started = False
    for name, m in model.named_modules():
        if m is first:
            started = True
            continue
        if m is second:
            break
        if started and not any(True for _ in m.children()):
            out.append((name, m))
    return out
