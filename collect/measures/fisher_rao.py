"""Fisher–Rao norm (Liang, Poggio, Rakhlin & Stokes 2019, "Fisher-Rao metric, geometry, and complexity of neural
networks"; Jiang et al. 2020 list it among the norm-based measures).

Definition (empirical, with the training labels), over all trainable parameters θ:

    ‖θ‖²_fr = (1/n) Σ_i ⟨θ, ∇_θ ℓ(f(θ, x_i), y_i)⟩²,

computed exactly for any network as ⟨θ, ∇_θ ℓ_i⟩ = ⟨∂ℓ_i/∂f, J_i θ⟩ with J_i θ from one forward-mode pass
(``torch.func.jvp`` of the outputs along the tangent θ), over a seeded subset of ``n_samples`` training points.
For a ReLU (or max-pool) network without biases and without batch norm, with L + 1 weight layers, f is positively
homogeneous of degree L + 1 in θ, so J_i θ = (L + 1) f(x_i) and the definition equals Liang et al.'s formula

    ‖θ‖²_fr = (L + 1)² (1/n) Σ_i ⟨∂ℓ_i/∂f, f(x_i)⟩².

Biases: they are parameters like the weights and enter θ in the definition above; with biases the network is not
homogeneous and the (L + 1)² formula is only an approximation of it. The diagnostic ``fisher_rao_formula_gap`` is
the relative difference |formula − definition| / definition: 0 (to rounding) exactly when the identity holds.
"""

from __future__ import annotations

import torch
from torch.func import functional_call, jvp

from collect.config import SpecError
from collect.measures.context import MeasureContext, MeasureResult
from collect.measures.norms import weight_layers
from collect.measures.registry import measure

PAPER = "Liang, Poggio, Rakhlin & Stokes 2019 (Fisher-Rao metric, geometry, and complexity of neural networks)"
DEFAULT_POINTS = 5000


def fisher_rao_terms(model: torch.nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ⟨θ, ∇_θ ℓ_i⟩ (exact, by a jvp along θ) and ⟨∂ℓ_i/∂f, f(x_i)⟩, as float64 vectors."""
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = dict(model.named_buffers())
    out, tangent = jvp(lambda p: functional_call(model, {**buffers, **p}, (x,)), (params,), (params,))
    logits = out.detach().requires_grad_(True)
    total = loss_fn(logits, y) * x.shape[0]  # Σ_i ℓ_i: its gradient w.r.t. row i of the logits is ∂ℓ_i/∂f_i
    (dl_df,) = torch.autograd.grad(total, logits)
    return (dl_df * tangent).sum(1).double(), (dl_df * logits.detach()).sum(1).double()


@measure(
    "fisher_rao",
    directions={"fisher_rao_norm": 1},
    diagnostics=("fisher_rao_formula_gap",),
    paper=PAPER,
)
def fisher_rao(ctx: MeasureContext, *, n_samples: int | None = None, chunk_size: int = 2048) -> MeasureResult:
    """‖θ‖²_fr = mean_i ⟨θ, ∇_θ ℓ_i⟩² on the training set (module docstring; equal to (L+1)² mean⟨∂ℓ/∂f, f⟩² for
    bias-free ReLU networks)."""
    if n_samples is not None and n_samples < 1:
        raise SpecError(f"measures.fisher_rao.n_samples = {n_samples!r}: give a positive number of points")
    if chunk_size < 1:
        raise SpecError(f"measures.fisher_rao.chunk_size = {chunk_size!r}: must be >= 1")
    x, y = ctx.train_subset(DEFAULT_POINTS if n_samples is None else n_samples, salt=0)
    exact, homogeneous = [], []
    for i in range(0, x.shape[0], chunk_size):
        a, b = fisher_rao_terms(ctx.model, ctx.loss_fn, x[i : i + chunk_size], y[i : i + chunk_size])
        exact.append(a)
        homogeneous.append(b)
    value = float(torch.cat(exact).pow(2).mean())
    depth = len(weight_layers(ctx.model))
    formula = depth**2 * float(torch.cat(homogeneous).pow(2).mean())
    gap = abs(formula - value) / value if value > 0 else float("nan")
    return MeasureResult(values={"fisher_rao_norm": value, "fisher_rao_formula_gap": gap}, info={"n_points": str(x.shape[0])})


MEASURES = [fisher_rao]
