"""The sharpness radius of Jiang et al. 2020 ("Fantastic generalization measures", sharpness-based measures):
α' = the largest α such that a worst-case weight perturbation in the box |u_i| ≤ r_i(α) raises the training error
by at most ``target`` (default 0.1):

    max_{|u_i| ≤ r_i(α)} err(w + u) − err(w) ≤ target,
    r_i(α) = α (plain) or α|w_i| + ε (magnitude-aware, ε = 10⁻³).

The 0-1 error has no gradient, so the worst perturbation at one α is searched on the run's training loss, as
Jiang et al. do: ``restarts`` projected sign-gradient ascents u ← Π(u + r ⊙ sign ∇L(w + u)) of ``n_steps`` steps,
batched in one vmapped pass (restart 0 from the corner r ⊙ sign ∇L(w), the others from seeded random corners),
and the deviation is the largest training error seen at any iterate, minus err(w). The restarts' random corners
are drawn once and reused at every α (common random numbers), so the deviation is a deterministic function of α.
α' is bracketed by doubling/halving from ``alpha_start`` and refined by bisection on log α until hi/lo ≤
1 + ``rel_tol`` (at most ``n_iter`` steps), as the PAC-Bayes σ search (``collect.hessian.pacbayes``); the reported
α' is the largest tested value that met the constraint. The ascent at one α stops as soon as an iterate's error rise
exceeds ``target``: the deviation is a running maximum, so α is then inadmissible whatever the remaining steps find,
and the search's decisions, α' and its deviation are those of the full ascent (only ``n_evals`` is smaller). Since the ascent finds a lower bound on the worst error,
α' is an upper bound on the exact radius. In the magnitude-aware box the ε-box alone (α = 0) is tried first: when
it already raises the error by more than ``target`` (ε·‖∇_w err‖₁ can be large in many dimensions), α' = 0 and the
search is reported as not bracketed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.func import functional_call, grad_and_value, vmap

from collect.hessian.bisection import largest_admissible
from collect.hessian.operator import ChunkedLoss
from collect.logits import predict


@dataclass(frozen=True)
class RadiusSearch:
    alpha: float  # the largest admissible α found
    deviation: float  # the error rise found at α
    base_error: float
    n_evals: int  # batched evaluations (each: one pass of ``restarts`` perturbed models over the data)
    bracketed: bool  # False when no admissible / inadmissible α was found within the doubling range


def errors_and_grads(loss: ChunkedLoss, thetas: torch.Tensor, with_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The 0-1 training error at each row θ_r of ``thetas`` ([R, dim]) and, with ``with_grad``, the gradient of the
    training loss there, from one vmapped forward (and backward) pass per chunk of ``loss``'s points."""
    params = loss.unflatten_batch(thetas)

    def loss_and_error(p, x, y):
        logits = functional_call(loss.model, {**loss.fixed, **p}, (x,))
        return loss.loss_fn(logits, y), (predict(logits) != y).to(logits.dtype).mean()

    errors = torch.zeros(thetas.shape[0], dtype=thetas.dtype, device=thetas.device)
    grads = torch.zeros_like(thetas) if with_grad else None
    for i in range(0, loss.n, loss.chunk_size):
        xb, yb = loss.x[i : i + loss.chunk_size], loss.y[i : i + loss.chunk_size]
        weight = xb.shape[0] / loss.n
        if with_grad:
            g, (_, e) = vmap(grad_and_value(loss_and_error, has_aux=True), in_dims=(0, None, None))(params, xb, yb)
            grads += weight * loss.flatten_batch(g).detach()
        else:
            with torch.no_grad():
                _, e = vmap(loss_and_error, in_dims=(0, None, None))(params, xb, yb)
        errors += weight * e.detach()
    return errors, grads


def sharpness_radius(
    loss: ChunkedLoss,
    *,
    magnitude_eps: float | None = None,
    target: float = 0.1,
    restarts: int = 4,
    n_steps: int = 8,
    n_iter: int = 20,
    rel_tol: float = 0.01,
    alpha_start: float = 1e-2,
    generator: torch.Generator,
) -> RadiusSearch:
    """α' of the module docstring. ``loss`` (the training loss on the training points) drives the ascent and the
    0-1 error on the same points measures it; ``magnitude_eps`` None: the plain box α, else α|w_i| + ε."""
    if not 0 < target < 1:
        raise ValueError(f"target = {target} must be in (0, 1): it is a rise in training error")
    if restarts < 1 or n_steps < 1 or n_iter < 0 or not rel_tol >= 0:
        raise ValueError(f"restarts = {restarts} and n_steps = {n_steps} must be >= 1, n_iter = {n_iter} and rel_tol = {rel_tol} >= 0")
    w = loss.theta0
    base = float(errors_and_grads(loss, w.unsqueeze(0), with_grad=False)[0][0])
    signs = (2 * torch.randint(0, 2, (restarts, w.numel()), generator=generator, device=w.device) - 1).to(w.dtype)
    _, g0 = loss.value_and_grad(w)
    signs[0] = torch.where(g0 >= 0, 1.0, -1.0).to(w.dtype)
    count = [0]

    def radius(alpha: float) -> torch.Tensor:
        return alpha * w.abs() + magnitude_eps if magnitude_eps is not None else torch.full_like(w, alpha)

    def deviation(alpha: float, stop_above: float = target) -> float:
        r = radius(alpha)
        u = signs * r
        worst = 0.0
        for step in range(n_steps + 1):
            err, g = errors_and_grads(loss, w + u, with_grad=step < n_steps)
            worst = max(worst, float(err.max()))
            count[0] += 1
            if g is None or worst - base > stop_above:
                break
            u = torch.clamp(u + r * torch.sign(g), -r, r)
        return worst - base

    if magnitude_eps is not None:
        floor = deviation(0.0, stop_above=math.inf)  # the box of half-width ε alone, its rise reported in full
        if floor > target:
            return RadiusSearch(0.0, floor, base, count[0], False)
    alpha, dev, bracketed = largest_admissible(
        deviation, target=target, start=alpha_start, n_iter=n_iter, rel_tol=rel_tol
    )
    return RadiusSearch(alpha, dev, base, count[0], bracketed)
