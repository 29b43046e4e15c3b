"""Per-sample Hessian trace Tr ∇²_θ ℓ(f(θ, x), y), one value per training point (paper 000, section 3.2).

Exact method (no estimator noise). Write the Hessian of ℓ∘f as Gauss–Newton plus residual:
    ∇²_θ ℓ = Jᵀ (∇²_f ℓ) J + Σ_c (∂ℓ/∂f_c) ∇²_θ f_c,       J = ∂f/∂θ (C × P).
If f is piecewise linear in each *single* parameter θ_i (others fixed), ∂²f_c/∂θ_i² = 0 almost everywhere, so the
residual term has a zero diagonal and Tr ∇²ℓ = Tr Jᵀ(∇²_f ℓ)J. This holds for Linear/Conv layers with ReLU,
LeakyReLU, max- and average-pooling, and for batch norm *in eval mode* (an affine map with fixed running
statistics, itself linear in its own γ and β). It fails for tanh, sigmoid, softmax layers, and for batch norm in
training mode (batch statistics couple the parameters nonlinearly); those get the Hutchinson method.
    cross-entropy, ∇²_f ℓ = diag(s) − ssᵀ (s = softmax f):
        Tr = Σ_c s_c ‖∇f_c‖² − ‖Σ_c s_c ∇f_c‖² = Σ_c s_c ‖∇f_c − ḡ‖²,   ḡ = Σ_c s_c ∇f_c
      (the right-hand form is computed: it is a weighted variance, non-negative and free of the cancellation that
      the difference of squares suffers for confident points, where both terms are ≈ ‖∇f_y‖²);
    squared error ℓ = (1/C) Σ_c (f_c − [y = c])² (``collect.losses.squared_error``), ∇²_f ℓ = (2/C) I:
        Tr = (2/C) Σ_c ‖∇f_c‖².
Per-sample Jacobians come from ``torch.func.vmap(jacrev(...))`` in chunks sized to bound memory.

Hutchinson method: per point, the mean of zᵀ∇²ℓ_i z over ``n_probes`` Rademacher z (vectorised over points and
probes), with the per-point standard error.

ACEHT and the margin bound (paper 000, Prop. 3.1): ACEHT(x) = (‖x‖² + 1)(1 − Σ_j S_j²), exactly the per-sample trace
of the affine model f = Wx + b under cross-entropy; margin bound = (‖x‖² + 1)(1 − γ_S²) with γ_S the softmax margin.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vjp, vmap

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Leaf modules through which the network stays piecewise linear in each parameter (eval mode).
_PIECEWISE_LINEAR = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
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
    nn.Dropout,  # identity in eval mode
)
_BATCH_NORM = nn.modules.batchnorm._BatchNorm


def piecewise_linear_reason(model: nn.Module) -> str | None:
    """None when the exact (Gauss–Newton) per-sample trace applies to ``model``; otherwise why it does not.

    Checks every leaf module against a list of layers known to keep the network piecewise linear in each
    parameter. A model whose ``forward`` applies nonlinear functions directly (not as modules) cannot be
    inspected this way; the models of ``collect.models`` are plain ``nn.Sequential`` stacks of modules.
    """
    if model.training:
        return "the model is in training mode (dropout and batch statistics); call model.eval()"
    for name, m in model.named_modules():
        if any(True for _ in m.children()):
            continue
        if isinstance(m, _BATCH_NORM):
            if m.training or not m.track_running_stats:
                return f"batch norm '{name}' uses batch statistics"
            continue
        if not isinstance(m, _PIECEWISE_LINEAR):
            return f"layer '{name}' ({type(m).__name__}) is not piecewise linear"
    return None


def exact_per_sample_trace(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: str = "cross_entropy",
    chunk_size: int | None = None,
    max_elements: int = 2**25,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact per-sample Hessian traces (Gauss–Newton identity) and the logits, for piecewise-linear networks.

    ``chunk_size`` points go through vmap at once; by default as many as keep the per-chunk Jacobian
    (points × classes × parameters) under ``max_elements`` numbers. Raises ValueError if the identity does
    not apply (see ``piecewise_linear_reason``); use ``hutchinson_per_sample_trace`` then.
    """
    reason = piecewise_linear_reason(model)
    if reason is not None:
        raise ValueError(f"exact per-sample trace needs a piecewise-linear network in eval mode: {reason}")
    if loss not in ("cross_entropy", "mse"):
        raise ValueError(f"loss = {loss!r}: the exact per-sample trace knows 'cross_entropy' and 'mse'")
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    n_params = sum(v.numel() for v in params.values())
    with torch.no_grad():
        num_classes = model(x[:1]).shape[-1]
    if chunk_size is None:
        chunk_size = max(1, max_elements // max(1, num_classes * n_params))

    def f_single(p: dict[str, torch.Tensor], xi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)
        return out, out

    jac_fn = vmap(jacrev(f_single, has_aux=True), in_dims=(None, 0))
    traces, logits = [], []
    for i in range(0, x.shape[0], chunk_size):
        jac, out = jac_fn(params, x[i : i + chunk_size])
        b = out.shape[0]
        if loss == "cross_entropy":
            s = torch.softmax(out, dim=-1)  # [B, C]
            g_bar = {k: torch.einsum("bc,bc...->b...", s, j) for k, j in jac.items()}
            sq = sum((j - g_bar[k].unsqueeze(1)).pow(2).reshape(b, num_classes, -1).sum(-1) for k, j in jac.items())
            traces.append((s * sq).sum(-1))
        else:
            sq = sum(j.pow(2).reshape(b, -1).sum(-1) for j in jac.values())
            traces.append(2.0 / num_classes * sq)
        logits.append(out)
    return torch.cat(traces).detach(), torch.cat(logits).detach()


def hutchinson_per_sample_trace(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_probes: int,
    generator: torch.Generator,
    chunk_size: int = 64,
    probe_block: int = 16,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample traces by Hutchinson (any network): (trace estimate, its standard error, logits) per point.

    Each point gets ``n_probes`` Rademacher probes of its own loss Hessian, computed as forward-over-reverse
    HVPs (reverse-over-reverse) vectorised over points and over a block of probes.
    """
    if n_probes < 2:
        raise ValueError(f"n_probes = {n_probes} must be >= 2 so each point has a standard error")
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}

    def loss_single(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    g_fn = grad(loss_single)

    def point(v: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        """zᵀ∇²ℓ_i z for each probe z (rows of v), reverse-over-reverse as in ``ChunkedLoss.hvp_batch``."""
        _, pullback = vjp(lambda p: g_fn(p, xi, yi), params)
        hv = vmap(pullback)(v)[0]
        return sum((hv[k] * v[k]).reshape(v[k].shape[0], -1).sum(1) for k in v)

    per_point = vmap(point, in_dims=(0, 0, 0))  # over points
    means, ses, logits = [], [], []
    for i in range(0, x.shape[0], chunk_size):
        xb, yb = x[i : i + chunk_size], y[i : i + chunk_size]
        b = xb.shape[0]
        samples = []
        for j in range(0, n_probes, probe_block):
            k = min(probe_block, n_probes - j)
            v = {
                name: (2 * torch.randint(0, 2, (b, k, *t.shape), generator=generator, device=t.device) - 1).to(t.dtype)
                for name, t in params.items()
            }
            samples.append(per_point(v, xb, yb).detach())
        s = torch.cat(samples, dim=1).double()  # [B, n_probes]
        means.append(s.mean(1))
        ses.append(s.std(1, unbiased=True) / np.sqrt(n_probes))
        with torch.no_grad():
            logits.append(model(xb))
    return torch.cat(means), torch.cat(ses), torch.cat(logits)


def margins(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed output margin f_y − max_{j≠y} f_j and the same on softmax outputs (design page definitions)."""

    def signed(v: torch.Tensor) -> torch.Tensor:
        true = v.gather(1, y.view(-1, 1)).squeeze(1)
        other = v.scatter(1, y.view(-1, 1), float("-inf")).max(dim=1).values
        return true - other

    return signed(logits), signed(torch.softmax(logits, dim=-1))


def aceht(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """ACEHT(x) = (‖x‖² + 1)(1 − Σ_j S_j²), paper 000 Prop. 3.1."""
    s = torch.softmax(logits, dim=-1)
    return (x.reshape(x.shape[0], -1).pow(2).sum(1) + 1) * (1 - s.pow(2).sum(1))


def margin_bound(x: torch.Tensor, softmax_margin: torch.Tensor) -> torch.Tensor:
    """(‖x‖² + 1)(1 − γ_S²), the upper bound on ACEHT of paper 000 section 3.1 (for correctly classified points)."""
    return (x.reshape(x.shape[0], -1).pow(2).sum(1) + 1) * (1 - softmax_margin.pow(2))
