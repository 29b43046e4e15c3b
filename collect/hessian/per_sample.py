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
    squared error ℓ = ½ Σ_c (f_c − [y = c])² (``mse``, ``collect.losses.squared_error``), ∇²_f ℓ = I:
        Tr = Σ_c ‖∇f_c‖²;  its 1/C-scaled form (``mse_mean``), ∇²_f ℓ = (2/C) I:  Tr = (2/C) Σ_c ‖∇f_c‖²;
    logistic loss of one logit z, ℓ = log(1 + exp(−(2y − 1)z)) (``binary_cross_entropy``), ∇²_z ℓ = σ(z)(1 − σ(z)):
        Tr = σ(z)(1 − σ(z)) ‖∇z‖².
Per-sample Jacobians come from ``torch.func.vmap(jacrev(...))`` in chunks sized to bound memory: with respect to each
layer's output for plain Sequential models (per-parameter norms then follow in closed form, see
``exact_per_sample_trace``), with respect to all parameters otherwise.

Hutchinson method: per point, the mean of zᵀ∇²ℓ_i z over ``n_probes`` Rademacher z (vectorised over points and
probes), with the per-point standard error.

ACEHT and the margin bound (paper 000, Prop. 3.1): ACEHT(x) = (‖x‖² + 1)(1 − Σ_j S_j²), exactly the per-sample trace
of the affine model f = Wx + b under cross-entropy; margin bound = (‖x‖² + 1)(1 − γ_S²) with γ_S the softmax margin.
Single logit z under the logistic loss: ACEHT(x) = (‖x‖² + 1) σ(z)(1 − σ(z)), exactly the per-sample trace of the
affine model z = wᵀx + b, and γ_S = 2σ((2y − 1)z) − 1, so 1 − γ_S² = 4σ(z)(1 − σ(z)) and the margin bound is 4·ACEHT
(``collect.logits``; both are (‖x‖² + 1)·Tr ∇²_f ℓ up to the bound's constant).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vjp, vmap

from collect.logits import output_hessian_trace, output_margins, probability_margins
from collect.losses import SQUARED_ERROR_CURVATURE

# losses whose output Hessian ∇²_f ℓ is known here
EXACT_LOSSES = ("cross_entropy", "binary_cross_entropy", *SQUARED_ERROR_CURVATURE)

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
    structured: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact per-sample Hessian traces (Gauss–Newton identity) and the logits, for piecewise-linear networks.

    Two implementations of the same formula, equal to rounding (both tested against dense Hessians):
    * structured (default when the model is a plain nested ``nn.Sequential`` of supported layers): per-sample
      Jacobians of the logits with respect to each layer's *output* (``vmap(jacrev)``), from which the per-sample
      parameter-gradient norms follow in closed form — ‖δaᵀ‖² = ‖δ‖²‖a‖² for a Linear layer, a patch product
      for a convolution, channel sums for batch norm. Memory and time scale with activations, not parameters.
    * generic (``structured=False``, or any other piecewise-linear model): per-sample Jacobians with respect to
      all parameters (``vmap(jacrev)`` over ``functional_call``), points × classes × parameters numbers per chunk.
    ``chunk_size`` points go through vmap at once; by default as many as keep the per-chunk Jacobian under
    ``max_elements`` numbers. Raises ValueError if the identity does not apply (see ``piecewise_linear_reason``).
    """
    reason = piecewise_linear_reason(model)
    if reason is not None:
        raise ValueError(f"exact per-sample trace needs a piecewise-linear network in eval mode: {reason}")
    if loss not in EXACT_LOSSES:
        raise ValueError(f"loss = {loss!r}: the exact per-sample trace knows {', '.join(map(repr, EXACT_LOSSES))}")
    leaves = _structured_leaves(model)
    if structured and leaves is None:
        raise ValueError("structured per-sample trace needs a plain nn.Sequential of Linear/Conv2d/BatchNorm layers")
    if structured is False or leaves is None:
        return _generic_trace(model, x, loss, chunk_size, max_elements)
    return _structured_trace(leaves, x, loss, chunk_size, max_elements)


def output_hessian(out: torch.Tensor, loss: str) -> tuple[torch.Tensor, bool]:
    """∇²_f ℓ of each row of the logits ``out`` [B, C] as (weights w [B, C], centred): cross-entropy
    diag(s) − ssᵀ is (s, True), read as Σ_c s_c ‖J_c − Σ_k s_k J_k‖²; a diagonal ∇²_f ℓ = diag(w) is (w, False),
    read as Σ_c w_c ‖J_c‖² — κ for the squared errors, σ(z)(1 − σ(z)) for one logit under the logistic loss."""
    if loss == "cross_entropy":
        return torch.softmax(out, dim=-1), True
    if loss == "binary_cross_entropy":
        if out.shape[-1] != 1:
            raise ValueError(f"loss = 'binary_cross_entropy' needs one logit per point, the model has {out.shape[-1]}")
        return output_hessian_trace(out).unsqueeze(-1), False
    return torch.full_like(out, SQUARED_ERROR_CURVATURE[loss](out.shape[-1])), False


def _ggn_trace(jac_rows: torch.Tensor, weight: torch.Tensor, centred: bool) -> torch.Tensor:
    """Tr Jᵀ(∇²_f ℓ)J from Jacobian rows [B, C, ...] and ``output_hessian``'s (weight, centred)."""
    b, c = weight.shape
    if centred:
        jac_rows = jac_rows - torch.einsum("bc,bc...->b...", weight, jac_rows).unsqueeze(1)
    return (weight * jac_rows.pow(2).reshape(b, c, -1).sum(-1)).sum(-1)


def _generic_trace(model: nn.Module, x: torch.Tensor, loss: str, chunk_size: int | None, max_elements: int):
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
        weight, centred = output_hessian(out, loss)
        traces.append(sum(_ggn_trace(j, weight, centred) for j in jac.values()))
        logits.append(out)
    return torch.cat(traces).detach(), torch.cat(logits).detach()


_STRUCTURED_PARAM_LAYERS = (nn.Linear, nn.Conv2d, _BATCH_NORM)


def _structured_leaves(model: nn.Module) -> list[nn.Module] | None:
    """The leaf modules in forward order when ``model`` is a plain nested Sequential the structured path knows."""
    for m in model.modules():
        has_children = any(True for _ in m.children())
        if has_children and type(m) is not nn.Sequential:
            return None
        own = [p for p in m.parameters(recurse=False) if p.requires_grad]
        if not has_children and own and not isinstance(m, _STRUCTURED_PARAM_LAYERS):
            return None
        if isinstance(m, nn.Conv2d) and (m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str)):
            return None
    return [m for m in model.modules() if not any(True for _ in m.children())]


def _structured_trace(leaves: list[nn.Module], x: torch.Tensor, loss: str, chunk_size: int | None, max_elements: int):
    layers = [i for i, m in enumerate(leaves) if any(p.requires_grad for p in m.parameters(recurse=False))]
    with torch.no_grad():  # shapes of each layer's output, and the number of classes
        h, out_numel = x[:1], 0
        for i, m in enumerate(leaves):
            h = m(h)
            if i in layers:
                out_numel += h[0].numel()
        num_classes = h.shape[-1]
    if chunk_size is None:
        chunk_size = max(1, max_elements // max(1, num_classes * out_numel))

    def f_single(eps: dict[int, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        """Logits of one point with ε_l added to the output of each parametrised layer (ε = 0: the model)."""
        h = xi.unsqueeze(0)
        for i, m in enumerate(leaves):
            h = m(h)
            if i in eps:
                h = h + eps[i].unsqueeze(0)
        return h.squeeze(0)

    jac_fn = vmap(jacrev(f_single), in_dims=(None, 0))
    traces, logits = [], []
    for start in range(0, x.shape[0], chunk_size):
        xb = x[start : start + chunk_size]
        with torch.no_grad():  # layer inputs a_l and the logits
            h, inputs, zeros = xb, {}, {}
            for i, m in enumerate(leaves):
                if i in layers:
                    inputs[i] = h
                h = m(h)
                if i in layers:
                    zeros[i] = torch.zeros_like(h[0])
        out = h
        deltas = jac_fn(zeros, xb)  # {layer: [B, C, *output shape]}: ∂f_c/∂(output of the layer), per point
        weight, centred = output_hessian(out, loss)
        total = torch.zeros(xb.shape[0], dtype=out.dtype, device=out.device)
        for i in layers:
            total = total + _layer_trace(leaves[i], inputs[i], deltas[i], weight, centred)
        traces.append(total)
        logits.append(out)
    return torch.cat(traces).detach(), torch.cat(logits).detach()


def _layer_trace(m: nn.Module, a: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, centred: bool):
    """GGN-trace contribution of one layer's parameters from its input a [B, ...], δ = ∂f/∂output [B, C, ...] and
    ``output_hessian``'s (weight, centred)."""
    b, num_classes = weight.shape
    if centred:  # cross-entropy: centre the rows, weight by s (the variance form of the GGN trace)
        delta = delta - torch.einsum("bc,bc...->b...", weight, delta).unsqueeze(1)
    total = torch.zeros(b, dtype=a.dtype, device=a.device)
    if isinstance(m, nn.Linear):
        if a.ndim != 2:
            raise ValueError("structured per-sample trace: Linear layers must receive (batch, features) inputs")
        row_sq = delta.pow(2).sum(-1)  # [B, C]: ‖δ_c‖²
        if m.weight.requires_grad:
            total = total + (weight * row_sq).sum(-1) * a.pow(2).sum(-1)  # ‖δ_c aᵀ‖² = ‖δ_c‖²‖a‖²
        if m.bias is not None and m.bias.requires_grad:
            total = total + (weight * row_sq).sum(-1)
    elif isinstance(m, nn.Conv2d):
        d = delta.reshape(b, num_classes, m.out_channels, -1)  # [B, C, C_out, L]
        if m.weight.requires_grad:
            # Per-point, per-row weight gradient δ Uᵀ with U the input patches [B, C_in·kh·kw, L], built from strided
            # views (F.unfold gives the same U, but its im2col kernel measured ~20x slower on CPU for LeNet-5).
            a_pad = torch.nn.functional.pad(a, (m.padding[1], m.padding[1], m.padding[0], m.padding[0]))
            (kh, kw), (sh, sw), (dh, dw) = m.kernel_size, m.stride, m.dilation
            windows = a_pad.unfold(2, (kh - 1) * dh + 1, sh).unfold(3, (kw - 1) * dw + 1, sw)[..., ::dh, ::dw]
            u = windows.permute(0, 1, 4, 5, 2, 3).reshape(b, -1, d.shape[-1])  # [B, C_in·kh·kw, L]
            g = torch.bmm(d.reshape(b, -1, d.shape[-1]), u.transpose(1, 2))  # [B, C·C_out, C_in·kh·kw]
            total = total + (weight * g.reshape(b, num_classes, -1).pow(2).sum(-1)).sum(-1)
        if m.bias is not None and m.bias.requires_grad:
            total = total + (weight * d.sum(-1).pow(2).sum(-1)).sum(-1)
    else:  # batch norm in eval mode: y = γ x̂ + β with x̂ from the running statistics
        shape = (1, -1) + (1,) * (a.ndim - 2)
        x_hat = (a - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps)
        d = delta.reshape(b, num_classes, a.shape[1], -1)  # [B, C, channels, positions]
        if m.weight is not None and m.weight.requires_grad:
            g = (d * x_hat.reshape(b, 1, a.shape[1], -1)).sum(-1)
            total = total + (weight * g.pow(2).sum(-1)).sum(-1)
        if m.bias is not None and m.bias.requires_grad:
            total = total + (weight * d.sum(-1).pow(2).sum(-1)).sum(-1)
    return total


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
    """Signed output margin f_y − max_{j≠y} f_j and the same on softmax outputs (design page definitions); for one
    logit (2y − 1)·z and 2σ((2y − 1)z) − 1 (``collect.logits``)."""
    return output_margins(logits, y.view(-1)), probability_margins(logits, y.view(-1))


def aceht(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """ACEHT(x) = (‖x‖² + 1)(1 − Σ_j S_j²), paper 000 Prop. 3.1; (‖x‖² + 1) σ(z)(1 − σ(z)) for one logit."""
    return (x.reshape(x.shape[0], -1).pow(2).sum(1) + 1) * output_hessian_trace(logits)


def margin_bound(x: torch.Tensor, softmax_margin: torch.Tensor) -> torch.Tensor:
    """(‖x‖² + 1)(1 − γ_S²), the upper bound on ACEHT of paper 000 section 3.1 (for correctly classified points)."""
    return (x.reshape(x.shape[0], -1).pow(2).sum(1) + 1) * (1 - softmax_margin.pow(2))
