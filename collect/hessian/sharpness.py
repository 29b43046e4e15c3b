"""Keskar sharpness (Keskar et al. 2017; paper 002, definition 2.1 and appendix B).

    sharpness = 100 · max_{Δ ∈ C_ε} (L(w + Δ) − L(w)) / (1 + L(w)),    C_ε = {Δ : |Δ_i| ≤ ε(|w_i| + 1)}

The parentheses are as written: the *difference* is divided by (1 + L(w)) — one public implementation computes
L(w+Δ) − L(w)/(1 + L(w)) by operator precedence, which is a different (and meaningless) number.

The maximisation is local (the problem is non-concave), so the value is a lower bound on the true maximum:
* ``"lbfgsb"``: L-BFGS-B on the box (Keskar et al.'s choice), in the full parameter space or, with
  ``subspace_dim = p``, in a random p-dimensional subspace Δ = A y (A with orthonormal columns, so A⁺ = Aᵀ) with
  the box |y_j| ≤ ε(|(Aᵀw)_j| + 1) of Keskar et al.;
* ``"pga"``: projected sign-gradient ascent, Δ ← Π_C(Δ + η·r ⊙ sign ∇L), r the box half-widths.
Both start from a seeded uniform point in the box (at a minimum the gradient at Δ = 0 vanishes, which would stop
L-BFGS-B at once) and keep the largest loss seen; Δ = 0 is feasible, so the value is never below 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.optimize import Bounds, minimize

from collect.hessian.operator import ChunkedLoss

ValueAndGrad = Callable[[torch.Tensor], tuple[float, torch.Tensor]]
METHODS = ("lbfgsb", "pga")


@dataclass(frozen=True)
class BoxMax:
    """Result of maximising a loss over a box around w."""

    loss_at_w: float
    loss_max: float
    n_evals: int
    message: str

    @property
    def sharpness(self) -> float:
        return 100.0 * (self.loss_max - self.loss_at_w) / (1.0 + self.loss_at_w)


def maximize_in_box(
    value_and_grad: ValueAndGrad,
    w: torch.Tensor,
    radius: torch.Tensor,
    *,
    method: str = "lbfgsb",
    max_iter: int = 20,
    generator: torch.Generator,
    basis: torch.Tensor | None = None,
    pga_step: float = 0.25,
) -> BoxMax:
    """max over Δ (or y, Δ = basis @ y) with |Δ_i| ≤ radius_i of value(w + Δ), by a local ascent method.

    ``basis`` (dim × p, orthonormal columns) restricts Δ to its span; ``radius`` is then the box on y.
    """
    if method not in METHODS:
        raise ValueError(f"method = {method!r}: use one of {', '.join(METHODS)}")
    if max_iter < 1:
        raise ValueError(f"max_iter = {max_iter} must be >= 1")
    loss0, _ = value_and_grad(w)
    best = [loss0]
    evals = [1]

    def at(y: torch.Tensor) -> tuple[float, torch.Tensor]:
        delta = y if basis is None else basis @ y
        val, g = value_and_grad(w + delta)
        evals[0] += 1
        best[0] = max(best[0], val)
        return val, (g if basis is None else basis.T @ g)

    u = torch.rand(radius.shape, generator=generator, device=radius.device, dtype=torch.float64).to(radius.dtype)
    y0 = (2 * u - 1) * radius
    if method == "lbfgsb":
        r = radius.double().cpu().numpy()

        def neg(y_np: np.ndarray) -> tuple[float, np.ndarray]:
            val, g = at(torch.as_tensor(y_np, dtype=w.dtype, device=w.device))
            return -val, -g.double().cpu().numpy()

        res = minimize(
            neg,
            y0.double().cpu().numpy(),
            jac=True,
            method="L-BFGS-B",
            bounds=Bounds(-r, r),
            options={"maxiter": max_iter, "ftol": 0.0, "gtol": 0.0},
        )
        message = f"L-BFGS-B: {res.message}"
    else:
        y = y0
        for _ in range(max_iter):
            _, g = at(y)
            y = torch.clamp(y + pga_step * radius * torch.sign(g), -radius, radius)
        at(y)
        message = f"projected sign-gradient ascent, {max_iter} steps of {pga_step}·r"
    return BoxMax(loss0, best[0], evals[0], message)


def keskar_sharpness(
    loss: ChunkedLoss,
    *,
    epsilon: float = 1e-3,
    method: str = "lbfgsb",
    subspace_dim: int | None = None,
    max_iter: int = 20,
    generator: torch.Generator,
) -> BoxMax:
    """Keskar sharpness of ``loss`` at its current parameters (``.sharpness`` on the result)."""
    if not epsilon > 0:
        raise ValueError(f"epsilon = {epsilon} must be > 0")
    w = loss.theta0
    if subspace_dim is None:
        basis = None
        radius = epsilon * (w.abs() + 1)
    else:
        if not 1 <= subspace_dim <= loss.dim:
            raise ValueError(f"subspace_dim = {subspace_dim} must be in [1, {loss.dim}] (the number of parameters)")
        gauss = torch.randn(loss.dim, subspace_dim, generator=generator, device=w.device, dtype=torch.float64)
        basis = torch.linalg.qr(gauss).Q.to(w.dtype)
        radius = epsilon * ((basis.T @ w).abs() + 1)
    return maximize_in_box(
        loss.value_and_grad, w, radius, method=method, max_iter=max_iter, generator=generator, basis=basis
    )
