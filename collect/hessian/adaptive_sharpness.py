"""Adaptive sharpness (Kwon et al. 2021, ASAM; Andriushchenko et al. 2023, "A modern look at the relationship
between sharpness and generalization"): the loss rise over an element-wise scaled ℓ∞ or ℓ2 ball.

Worst case, with the scale vector c (adaptive: c = |w|; plain: c = 1):

    S_max(w) = max_{‖u‖_p ≤ ρ} L(w + c ⊙ u) − L(w),     p ∈ {∞, 2}

Average case, with Gaussian weight noise of per-coordinate standard deviation ρ c_i:

    S_avg(w) = E_{z ~ N(0, I)} L(w + ρ c ⊙ z) − L(w).

With c = |w| both are invariant to every reparametrisation that multiplies parameters by positive constants and
leaves the function unchanged (the alpha scaling of a ReLU layer, paper 002): the ball maps onto itself, and the
ascent below runs in the u coordinates, where the gradient c ⊙ ∇L is unchanged by such a scaling. The plain (c = 1)
and Keskar (c = |w| + 1) versions are not invariant.

The worst case is maximised by an Auto-PGD-style ascent (Croce & Hein 2020) in the u coordinates: steps of size η
along sign(c ⊙ ∇L) (ℓ∞) or the normalised c ⊙ ∇L (ℓ2), projected on the ball, with momentum 0.75; η starts at 2ρ
and is halved at the checkpoints p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) (fractions
of ``max_iter``) when fewer than 75 % of the steps since the last checkpoint raised the loss, or when η was not
halved at the last checkpoint and the best loss has not risen since; a halving restarts from the best point.
A round stops before ``max_iter`` (20) steps once its best (the largest loss any of its restarts reached) has not
risen by more than ``TOL`` · (best − L(w)) (TOL = 10⁻³) for ``PATIENCE`` (3) steps in a row: on the study's trained
MLPs the value is then within 10⁻⁴ relative of 20 full steps at a quarter to a half of the evaluations. On the panel of
tests/collect/hessian/test_adaptive_sharpness_panel.py (trained ReLU, tanh and batch-norm nets, seeds 0-4, ℓ∞ ρ =
1e-3 … 5e-2, ℓ2 ρ = 0.1 … 1; reference: 60 restarts × 100 annealed steps) the defaults reach ≥ 0.95 of the
reference in 89 of 90 cases; the one miss (batch norm, seed 2, ℓ∞ ρ = 1e-2: 0.41, a basin none of the 12 restarts
reaches while two of them refind a lower maximum, so the round rule stops) is the same with every step run.
Restart 0 starts at the first-order maximiser (ρ·sign(g̃) for ℓ∞, ρ·g̃/‖g̃‖ for ℓ2, g̃ = c ⊙ ∇L(w)); the others
at seeded random points of the sphere/box surface. Restarts run in rounds, batched into one vmapped
forward/backward pass per step, under the budget rule of Keskar sharpness (``collect.hessian.sharpness``, whose
defaults it reads): ``restarts`` (12) a round; the search ends after a round once ``refound`` (2) restarts started at
random points (not the first-order start) reached the best value within ``round_tol`` (1 %) of its rise above L(w),
or once a round raised the overall best by no more than that, or at ``max_restarts`` (36) restarts, and then
``converged`` is False. The value is a lower bound on the maximum (u = 0 is feasible, so it is never below 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from collect.hessian.sharpness import (
    MAX_RESTARTS, REFOUND, RESTARTS, ROUND_TOL, TOL, gained, last_restart_improved, round_ends_search,
)

BatchValueAndGrad = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # [R, dim] -> ([R], [R, dim])
BatchValue = Callable[[torch.Tensor], torch.Tensor]  # [R, dim] -> [R]
NORMS = ("linf", "l2")
MOMENTUM = 0.75  # Auto-PGD's momentum
SUCCESS_FRACTION = 0.75  # Auto-PGD's condition 1: fraction of loss-raising steps between checkpoints
PATIENCE = 3  # stale steps (the round's best rose by <= TOL of its rise above L(w)) before a round stops; 0: never


@dataclass(frozen=True)
class BallMax:
    """Result of maximising a loss over a scaled ball around w (``sharpness`` = the loss rise)."""

    loss_at_w: float
    loss_max: float
    n_evals: int  # loss-and-gradient evaluations, a batched evaluation of R points counting R
    n_restarts: int
    n_iter: int  # ascent steps (a batched step counts once)
    converged: bool  # the round rule stopped the search (not max_restarts)
    last_restart_improved: bool

    @property
    def sharpness(self) -> float:
        return self.loss_max - self.loss_at_w


@dataclass(frozen=True)
class NoiseMean:
    """Monte-Carlo average-case sharpness: mean loss rise under Gaussian noise and its standard error."""

    loss_at_w: float
    rise: float
    std_error: float
    n_draws: int


def checkpoints(n_iter: int) -> list[int]:
    """Auto-PGD's checkpoint iterations ⌈p_j · n_iter⌉ for p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({int(round(q * n_iter)) for q in p[1:] if 0 < round(q * n_iter) <= n_iter})


def project(u: torch.Tensor, rho: float, norm: str) -> torch.Tensor:
    """Rows of ``u`` projected on the ball ‖u‖_p ≤ ρ."""
    if norm == "linf":
        return u.clamp(-rho, rho)
    length = u.norm(dim=1, keepdim=True)
    return u * torch.clamp(rho / length.clamp_min(torch.finfo(u.dtype).tiny), max=1.0)


def ascent_direction(g: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit ℓp-dual size: sign(g) (ℓ∞) or g / ‖g‖ (ℓ2), row-wise."""
    if norm == "linf":
        return torch.sign(g)
    return g / g.norm(dim=1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)


def apgd(
    values_and_grads: BatchValueAndGrad,
    w: torch.Tensor,
    scale: torch.Tensor,
    u0: torch.Tensor,
    *,
    rho: float,
    norm: str,
    max_iter: int,
    loss0: float = -torch.inf,
    tol: float = TOL,
    patience: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Auto-PGD ascent of L(w + scale ⊙ u) over ‖u‖_p ≤ ρ for each row of ``u0`` at once; (best loss per row, evaluations).

    Rows are independent restarts; each keeps its own step size η (module docstring). With ``patience`` > 0 the
    ascent stops once max_rows best has not risen by more than ``tol`` · (that best − ``loss0``) for ``patience``
    steps in a row."""
    k = u0.shape[0]
    u = project(u0, rho, norm)
    f, g = values_and_grads(w + scale * u)
    gu = g * scale
    best_f, best_u, best_gu = f.clone(), u.clone(), gu.clone()
    eta = torch.full((k, 1), 2.0 * rho, dtype=w.dtype, device=w.device)
    u_prev = u.clone()
    marks = checkpoints(max_iter)
    last_mark, successes = 0, torch.zeros(k, dtype=torch.long, device=w.device)
    best_at_mark = best_f.clone()
    halved_at_mark = torch.zeros(k, dtype=torch.bool, device=w.device)  # η is 'unchanged' at the first mark too
    evals, stale = k, 0
    for it in range(max_iter):
        top = float(best_f.max())
        z = project(u + eta * ascent_direction(gu, norm), rho, norm)
        a = 1.0 if it == 0 else MOMENTUM
        u_new = project(u + a * (z - u) + (1 - a) * (u - u_prev), rho, norm)
        u_prev, u = u, u_new
        f_new, g = values_and_grads(w + scale * u)
        evals += k
        gu = g * scale
        successes += (f_new > f).long()
        f = f_new
        better = f > best_f
        best_f = torch.where(better, f, best_f)
        best_u[better], best_gu[better] = u[better], gu[better]
        if it + 1 in marks:
            since = it + 1 - last_mark
            reduce = (successes < SUCCESS_FRACTION * since) | (~halved_at_mark & (best_f <= best_at_mark))
            eta = torch.where(reduce[:, None], eta / 2, eta)
            u[reduce], u_prev[reduce], gu[reduce], f[reduce] = best_u[reduce], best_u[reduce], best_gu[reduce], best_f[reduce]
            halved_at_mark, best_at_mark, last_mark = reduce, best_f.clone(), it + 1
            successes.zero_()
        stale = 0 if gained(float(best_f.max()), top, loss0, tol) else stale + 1
        if 0 < patience <= stale:
            break
    return best_f, torch.tensor(evals)


def worst_case_ball_max(
    values_and_grads: BatchValueAndGrad,
    w: torch.Tensor,
    scale: torch.Tensor,
    *,
    rho: float,
    norm: str,
    generator: torch.Generator,
    restarts: int = RESTARTS,
    max_restarts: int = MAX_RESTARTS,
    max_iter: int = 20,
    tol: float = TOL,
    refound: int = REFOUND,
    round_tol: float = ROUND_TOL,
    patience: int = PATIENCE,
) -> BallMax:
    """max_{‖u‖_p ≤ ρ} L(w + scale ⊙ u) by rounds of batched Auto-PGD restarts (module docstring).

    ``values_and_grads`` evaluates the loss and its gradient at R points (rows of an [R, dim] tensor); ``tol`` is the
    relative gain by which the last restart counts as having improved on the earlier ones (a diagnostic) and by
    which a step counts as having raised a round's best (``patience`` stale steps end the round; 0: every round runs
    ``max_iter`` steps)."""
    if norm not in NORMS:
        raise ValueError(f"norm = {norm!r}: use one of {', '.join(NORMS)}")
    if not rho > 0:
        raise ValueError(f"rho = {rho} must be > 0 (the radius of the ball)")
    if restarts < 1 or max_restarts < restarts:
        raise ValueError(f"restarts = {restarts} must be >= 1 and max_restarts = {max_restarts} >= restarts")
    if max_iter < 1 or not tol >= 0 or refound < 1 or not round_tol >= 0 or patience < 0:
        raise ValueError(f"max_iter = {max_iter} and refound = {refound} must be >= 1, tol = {tol}, round_tol = "
                         f"{round_tol} and patience = {patience} >= 0")
    v0, g0 = values_and_grads(w.unsqueeze(0))
    loss0 = float(v0[0])
    first = rho * ascent_direction((g0[0] * scale).unsqueeze(0), norm)[0]
    restart_best: list[float] = []
    best, evals, iters, done, converged = loss0, 1, 0, 0, False
    while done < max_restarts:
        k = min(restarts, max_restarts - done)
        u0 = _random_surface_points(k, w.numel(), rho, norm, generator, w.dtype, w.device)
        if done == 0:
            u0[0] = first
        vals, n = apgd(values_and_grads, w, scale, u0, rho=rho, norm=norm, max_iter=max_iter, loss0=loss0, tol=tol,
                       patience=patience)
        evals += int(n)
        iters += max_iter
        before = best
        restart_best.extend(float(v) for v in vals)
        best = max(best, float(vals.max()))
        done += k
        converged = round_ends_search(restart_best, best, before, loss0, n_fixed=1, refound=refound,
                                      round_tol=round_tol)  # restart 0 starts at the first-order point
        if converged:
            break
    last_improved = last_restart_improved(restart_best, loss0, tol)
    return BallMax(loss0, max(best, loss0), evals, done, iters, converged, last_improved)


def average_case_rise(
    values: BatchValue,
    w: torch.Tensor,
    scale: torch.Tensor,
    *,
    rho: float,
    n_draws: int,
    generator: torch.Generator,
    draw_batch: int = 16,
) -> NoiseMean:
    """E_z L(w + ρ scale ⊙ z) − L(w), z ~ N(0, I), as a mean over ``n_draws`` seeded draws with its standard error."""
    if not rho > 0 or n_draws < 2 or draw_batch < 1:
        raise ValueError(f"rho = {rho} must be > 0, n_draws = {n_draws} >= 2 and draw_batch = {draw_batch} >= 1")
    loss0 = float(values(w.unsqueeze(0))[0])
    rises = []
    for i in range(0, n_draws, draw_batch):
        z = torch.randn(min(draw_batch, n_draws - i), w.numel(), generator=generator, dtype=w.dtype, device=w.device)
        rises.append(values(w + rho * scale * z) - loss0)
    r = torch.cat(rises).double()
    return NoiseMean(loss0, float(r.mean()), float(r.std(unbiased=True) / n_draws**0.5), n_draws)


def _random_surface_points(k: int, dim: int, rho: float, norm: str, generator, dtype, device) -> torch.Tensor:
    """Seeded random corners of the ℓ∞ box or points of the ℓ2 sphere of radius ρ."""
    if norm == "linf":
        signs = torch.randint(0, 2, (k, dim), generator=generator, device=device)
        return (2 * signs - 1).to(dtype) * rho
    z = torch.randn(k, dim, generator=generator, device=device, dtype=dtype)
    return rho * z / z.norm(dim=1, keepdim=True)
