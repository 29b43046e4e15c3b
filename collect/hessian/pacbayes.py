"""PAC-Bayes flatness (Jiang et al. 2020, "Fantastic generalization measures", the best measures of that study).

pacbayes_flatness = 1/σ'² where σ' is the largest standard deviation such that isotropic Gaussian weight noise
u ~ N(0, σ'² I) raises the expected training error by at most ``target`` (default 0.1):
    E_u[err(w + u)] − err(w) ≤ target.
pacbayes_mag_flatness = 1/α'² with magnitude-aware noise u_i ~ N(0, α'² w_i² + ε²), ε = 10⁻³.
σ is a standard deviation throughout: noise is drawn as σ·z with z ~ N(0, 1) (one public implementation passed
σ² where torch expects σ).

The expectation is a Monte-Carlo mean over ``n_draws`` draws with *common random numbers*: draw m always uses the
same standard normal vector z_m (drawn once from a per-draw seed), so E-hat(σ) is a deterministic function of σ,
monotone in practice, and the search is well defined. The largest admissible σ is bracketed by doubling/halving
from ``sigma_start`` and then refined by bisection on log σ until hi/lo ≤ 1 + ``rel_tol`` (at most ``n_iter``
steps); the reported σ' is the largest tested value that satisfied the constraint. The draws at one σ are
evaluated together in a vmapped forward pass (``torch.func.functional_call`` + ``vmap``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from collect.hessian.bisection import largest_admissible
from collect.hessian.operator import ChunkedLoss
from collect.logits import predict


@dataclass(frozen=True)
class SigmaSearch:
    sigma: float  # largest admissible σ (or α for the magnitude-aware noise) found
    deviation: float  # estimated error rise at that σ
    base_error: float
    n_evals: int  # error evaluations on the training set (each one a pass over it)
    bracketed: bool  # False if no admissible / no inadmissible σ was found within the search range

    @property
    def flatness(self) -> float:
        return 1.0 / self.sigma**2 if self.sigma > 0 else float("inf")


def zero_one_error(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean classification error (a 'mean loss', so ChunkedLoss can evaluate it chunk by chunk); predictions by
    ``collect.logits.predict`` (argmax, or 1[z > 0] for one logit)."""
    return (predict(logits) != labels).to(logits.dtype).mean()


# Defaults of the σ search, written once (the PAC-Bayes measures and Jiang et al.'s sharpness search read them here).
TARGET_DEVIATION = 0.1  # admissible rise of the training 0-1 error (Jiang et al. 2020)
N_DRAWS = 10  # noise draws averaged per σ (common random numbers across σ)
N_ITER = 20  # bisection steps on log σ at most
REL_TOL = 0.01  # bisection stops once hi/lo <= 1 + REL_TOL


def largest_admissible_sigma(
    error: ChunkedLoss,
    *,
    noise_std: Callable[[float, torch.Tensor], torch.Tensor],
    target: float = TARGET_DEVIATION,
    n_draws: int = N_DRAWS,
    n_iter: int = N_ITER,
    seed: int = 0,
    sigma_start: float = 1e-2,
    max_doublings: int = 60,
    rel_tol: float = REL_TOL,
    draw_batch: int | None = 16,
) -> SigmaSearch:
    """Largest σ with mean_m err(w + noise_std(σ, w) ⊙ z_m) − err(w) ≤ ``target`` (``error`` is a 0-1 ChunkedLoss).

    The bisection stops after ``n_iter`` steps or once hi/lo ≤ 1 + ``rel_tol`` (default 1 %: σ is then known to
    1 %, below the Monte-Carlo error of a 10-draw mean; 1/σ² to 2 %). ``draw_batch`` draws are evaluated together
    in one vmapped forward pass (``ChunkedLoss.values_batch``; memory ``draw_batch`` × the parameter count); None
    evaluates them one at a time. Both give the same draws z_m, so the same σ.
    """
    if not 0 < target < 1:
        raise ValueError(f"target = {target} must be in (0, 1): it is a rise in training error")
    if n_draws < 1 or n_iter < 0:
        raise ValueError(f"n_draws = {n_draws} must be >= 1 and n_iter = {n_iter} >= 0")
    if not rel_tol >= 0 or (draw_batch is not None and draw_batch < 1):
        raise ValueError(f"rel_tol = {rel_tol} must be >= 0 and draw_batch = {draw_batch} >= 1 (or None)")
    w = error.theta0
    base = error.value(w)
    count = [1]
    draws = [_standard_normal(w, seed * 1_000_003 + m) for m in range(n_draws)]  # common random numbers

    def deviation(sigma: float) -> float:
        std = noise_std(sigma, w)
        if draw_batch is None:
            total = sum(error.value(w + std * z) for z in draws)
        else:
            total = 0.0
            for i in range(0, n_draws, draw_batch):
                z = torch.stack(draws[i : i + draw_batch])
                total += float(error.values_batch(w + std * z).sum())
        count[0] += n_draws
        return total / n_draws - base

    lo, dev_lo, bracketed = largest_admissible(deviation, target=target, start=sigma_start, n_iter=n_iter,
                                               rel_tol=rel_tol, max_doublings=max_doublings)
    return SigmaSearch(lo, dev_lo, base, count[0], bracketed)


def _standard_normal(w: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator(device=w.device).manual_seed(seed)
    return torch.randn(w.shape, generator=g, device=w.device, dtype=w.dtype)


def isotropic_std(sigma: float, w: torch.Tensor) -> torch.Tensor:
    return torch.full_like(w, sigma)


def magnitude_aware_std(eps: float) -> Callable[[float, torch.Tensor], torch.Tensor]:
    """Standard deviations sqrt(α² w_i² + ε²) of Jiang et al.'s magnitude-aware perturbation."""

    def std(alpha: float, w: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(alpha**2 * w.pow(2) + eps**2)

    return std
