"""NNGP kernels: the prior covariance of a network's output over random initialisations.

"Why Flatness Correlates With Generalization for Deep Neural Networks" (Zhang et al., paper 002), appendix A:
the arc-cosine recursion (Cho & Saul 2009; Lee et al. 2017) for ReLU FCNs, and the Monte-Carlo empirical kernel
of eq. (6) (Novak et al. 2018) with one fully connected step for every other architecture. Initialisation
convention (as in ``collect.models.nngp_init_``): weights N(0, σ_w²/fan_in), biases N(0, σ_b²).
All kernels are float64 on the device of the inputs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable

import torch
from torch import nn

from collect.config import ModelConfig


def relu_nngp_kernel(x: torch.Tensor, depth: int, sigma_w: float, sigma_b: float) -> torch.Tensor:
    """Output-layer NNGP kernel of a ReLU FCN with ``depth`` hidden layers on the rows of ``x`` (flattened).

    K⁰ = σ_b² + σ_w² x·x'/d; then for each hidden layer (Cho & Saul's arc-cosine kernel of degree 1)
    K^{l+1} = σ_b² + σ_w²/(2π) √(K_xx K_x'x') (sin θ + (π − θ) cos θ), cos θ = K_xx' / √(K_xx K_x'x').
    Stable near θ = 0: sin θ = √((1−ρ)(1+ρ)), θ = atan2(sin θ, ρ), and the diagonal is set to its exact value
    σ_b² + σ_w² K_xx / 2 (θ = 0), so duplicated or nearly parallel inputs give no NaN and no negative variance.
    """
    if depth < 0:
        raise ValueError(f"depth = {depth} must be >= 0 (number of hidden layers)")
    if not sigma_w > 0 or sigma_b < 0:
        raise ValueError(f"sigma_w = {sigma_w} must be > 0 and sigma_b = {sigma_b} >= 0")
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    k = sigma_b**2 + sigma_w**2 * (x @ x.T) / x.shape[1]
    for _ in range(depth):
        k = _relu_step(k, sigma_w, sigma_b)
    return k


def _relu_step(k: torch.Tensor, sigma_w: float, sigma_b: float) -> torch.Tensor:
    """One layer of the arc-cosine recursion: E[relu(u) relu(v)] for (u, v) ~ N(0, k), then the next affine map."""
    diag = torch.diagonal(k).clamp_min(0.0)
    norm = torch.sqrt(diag[:, None] * diag[None, :])
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    rho = torch.where(norm > 0, k / safe, torch.ones_like(k)).clamp(-1.0, 1.0)
    sin = torch.sqrt((1.0 - rho) * (1.0 + rho))
    theta = torch.atan2(sin, rho)
    j = sin + (math.pi - theta) * rho  # J(θ); dJ/dρ = π − θ is bounded, so rounding in ρ stays small
    out = sigma_b**2 + sigma_w**2 / (2 * math.pi) * norm * j
    out.diagonal().copy_(sigma_b**2 + sigma_w**2 * diag / 2)
    return out


def empirical_kernel(features: Iterable[torch.Tensor], sigma_w: float, sigma_b: float) -> torch.Tensor:
    """Paper 002 eq. (6): σ_w²/(M n) Σ_m Σ_c h_m(x)_c h_m(x')_c + σ_b², from M last-hidden-layer feature matrices.

    Each element of ``features`` is one initialisation's (N, n) matrix of last hidden layer activations; the sum
    is the fully connected output step of the NNGP recursion applied to the Monte-Carlo kernel of the features.
    """
    total: torch.Tensor | None = None
    m = 0
    width = None
    for h in features:
        h = h.reshape(h.shape[0], -1).to(torch.float64)
        if width is None:
            width = h.shape[1]
        elif h.shape[1] != width:
            raise ValueError(f"feature widths differ between samples ({width} vs {h.shape[1]})")
        total = h @ h.T if total is None else total.addmm_(h, h.T)
        m += 1
    if total is None:
        raise ValueError("empirical_kernel needs at least one feature sample (M >= 1)")
    return total * (sigma_w**2 / (m * width)) + sigma_b**2


def penultimate_features(model: nn.Module, x: torch.Tensor, batch_size: int | None = 1024) -> torch.Tensor:
    """Inputs to the model's last Linear layer (the last hidden layer h^{L-1} of eq. (6)) for the rows of ``x``.

    ``batch_size=None`` runs all of ``x`` as one batch (needed when batch norm uses batch statistics).
    """
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("the model has no Linear output layer; the empirical NNGP kernel needs one (eq. (6))")
    captured: list[torch.Tensor] = []
    handle = last[-1].register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach()))
    try:
        with torch.no_grad():
            step = x.shape[0] if batch_size is None else batch_size
            for i in range(0, x.shape[0], step):
                model(x[i : i + step])
    finally:
        handle.remove()
    return torch.cat(captured)


def random_init_features(
    cfg: ModelConfig,
    input_shape: tuple[int, ...],
    num_classes: int,
    x: torch.Tensor,
    n_samples: int,
    sigma_w: float,
    sigma_b: float,
    seed: int,
) -> Iterable[torch.Tensor]:
    """Last-hidden-layer features of ``n_samples`` fresh initialisations of ``cfg`` with N(0, σ_w²/fan_in), N(0, σ_b²).

    Dropout is off. Batch norm uses the batch statistics of all of ``x`` (one batch): at initialisation its running
    statistics are still (0, 1), so eval mode would silently drop BN from the prior.
    """
    from collect.models import build_model  # lazy: models import torch layers only when the kernel is empirical

    if n_samples < 1:
        raise ValueError(f"mc_samples = {n_samples} must be >= 1")
    init_cfg = dataclasses.replace(cfg, init_sigma_w=float(sigma_w), init_sigma_b=float(sigma_b))
    for m in range(n_samples):
        model = build_model(init_cfg, input_shape, num_classes, seed=seed + m).to(x.device)
        model.eval()
        has_bn = False
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train()
                has_bn = True
        yield penultimate_features(model, x, batch_size=None if has_bn else 1024)


def default_mc_samples(n_points: int) -> int:
    """M = 0.1 (|S| + |E|), as in paper 002 appendix A (at least 1)."""
    return max(1, math.ceil(0.1 * n_points))
