"""Stochastic trace and Frobenius-norm estimators for a symmetric operator known only through matrix-vector products.

* Hutchinson (Hutchinson 1990; Avron & Toledo 2011): Tr(H) = E[zᵀHz] for Rademacher z. Probes are drawn in blocks
  and the run stops once the *standard error* of the running mean is at most ``rel_se`` times |mean| (after at
  least ``min_probes``), or at ``max_probes``. This is the stopping rule the design page asks for, in place of
  PyHessian's "the mean changed by less than x %" rule, which says nothing about the error of the estimate.
* Hutch++ (Meyer, Musco, Musco & Woodruff 2021): the trace of a rank-``rank`` sketch QᵀHQ is computed exactly and
  Hutchinson runs only on the deflated remainder (I−QQᵀ)H(I−QQᵀ), with the same stopping rule. Given Q the exact
  part has no variance, so the reported standard error is that of the remainder.
* Frobenius norm: ‖H‖²_F = Tr(H²) = E‖Hz‖² for Rademacher z; ‖H‖_F is its square root, with a delta-method error.

All estimators take ``matmat(V) -> H V`` on row blocks V of shape [k, dim] and count the products they make.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

MatMat = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Estimate:
    """A Monte-Carlo estimate with its standard error and the cost that produced it."""

    value: float
    std_error: float
    n_matvecs: int  # Hessian-vector products spent
    n_probes: int  # probes averaged in the stochastic part
    converged: bool  # True when the target relative standard error was reached


def rademacher(k: int, dim: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """k independent Rademacher (±1) vectors of length ``dim`` as rows."""
    bits = torch.randint(0, 2, (k, dim), generator=generator, device=device)
    return (2 * bits - 1).to(dtype)


def sequential_mean(
    draw: Callable[[int], np.ndarray],
    *,
    rel_se: float,
    min_probes: int,
    max_probes: int,
    block: int,
    offset: float = 0.0,
) -> tuple[float, float, int, bool]:
    """Average i.i.d. samples from ``draw(k)`` until se ≤ rel_se·|offset + mean| or ``max_probes`` samples.

    Returns (mean, standard error of the mean, number of samples, converged). ``offset`` is a known constant added
    to the mean before the relative comparison (Hutch++'s exact low-rank part).
    """
    _check_budget(rel_se, min_probes, max_probes, block)
    samples: list[float] = []
    while len(samples) < max_probes:
        k = min(block, max_probes - len(samples))
        samples.extend(float(s) for s in np.asarray(draw(k), dtype=np.float64).reshape(-1))
        n = len(samples)
        if n >= max(min_probes, 2):
            mean, se = _mean_se(samples)
            if se <= rel_se * abs(offset + mean):
                return mean, se, n, True
    mean, se = _mean_se(samples)
    return mean, se, len(samples), False


def hutchinson_trace(
    matmat: MatMat,
    dim: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
    rel_se: float = 0.02,
    min_probes: int = 10,
    max_probes: int = 500,
    block: int = 8,
) -> Estimate:
    """Tr(H) by Hutchinson with Rademacher probes, stopped on a target relative standard error."""

    def draw(k: int) -> np.ndarray:
        z = rademacher(k, dim, generator, dtype, device)
        return (z * matmat(z)).sum(dim=1).double().cpu().numpy()

    mean, se, n, ok = sequential_mean(draw, rel_se=rel_se, min_probes=min_probes, max_probes=max_probes, block=block)
    return Estimate(mean, se, n, n, ok)


def hutchpp_trace(
    matmat: MatMat,
    dim: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
    rank: int = 10,
    rel_se: float = 0.02,
    min_probes: int = 10,
    max_probes: int = 500,
    block: int = 8,
) -> Estimate:
    """Tr(H) by Hutch++: exact trace on a rank-``rank`` range sketch plus Hutchinson on the deflated remainder.

    Costs 2·rank products for the sketch, then one per remainder probe; ``max_probes`` bounds the remainder probes.
    When the remainder is small (a few dominant eigenvalues, as for trained networks) it converges with far fewer
    products than plain Hutchinson.
    """
    if rank < 1:
        raise ValueError(f"rank = {rank} must be >= 1 for Hutch++")
    rank = min(rank, dim)
    s = rademacher(rank, dim, generator, dtype, device)
    q, _ = torch.linalg.qr(matmat(s).T.double())  # [dim, rank], orthonormal basis of range(H S)
    q = q.to(dtype)
    hq = matmat(q.T.contiguous())  # [rank, dim] rows (H q_i)ᵀ
    exact = float((q.T * hq).sum().double())  # Tr(QᵀHQ)
    if rank == dim:
        return Estimate(exact, 0.0, 2 * rank, 0, True)

    def draw(k: int) -> np.ndarray:
        z = rademacher(k, dim, generator, dtype, device)
        z = z - (z @ q) @ q.T  # (I − QQᵀ) z
        return (z * matmat(z)).sum(dim=1).double().cpu().numpy()

    mean, se, n, ok = sequential_mean(
        draw, rel_se=rel_se, min_probes=min_probes, max_probes=max_probes, block=block, offset=exact
    )
    return Estimate(exact + mean, se, 2 * rank + n, n, ok)


def hutchinson_frobenius(
    matmat: MatMat,
    dim: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
    rel_se: float = 0.02,
    min_probes: int = 10,
    max_probes: int = 500,
    block: int = 8,
) -> Estimate:
    """‖H‖_F = sqrt(E‖Hz‖²), Rademacher z; standard error by the delta method, se(F) = se(F²) / (2F).

    The run stops when the relative standard error of ‖H‖_F (half that of ‖H‖²_F) reaches ``rel_se``. The
    square root of an unbiased estimate of ‖H‖²_F is biased low by about se(F)²/F, negligible at the stopping
    rule's precision.
    """

    def draw(k: int) -> np.ndarray:
        z = rademacher(k, dim, generator, dtype, device)
        return matmat(z).double().pow(2).sum(dim=1).cpu().numpy()

    mean, se, n, ok = sequential_mean(
        draw, rel_se=2 * rel_se, min_probes=min_probes, max_probes=max_probes, block=block
    )
    frob = math.sqrt(max(mean, 0.0))
    se_frob = se / (2 * frob) if frob > 0 else float("inf")
    return Estimate(frob, se_frob, n, n, ok)


def _mean_se(samples: list[float]) -> tuple[float, float]:
    a = np.asarray(samples, dtype=np.float64)
    if a.size < 2:
        return float(a.mean()), float("inf")
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(a.size))


def _check_budget(rel_se: float, min_probes: int, max_probes: int, block: int) -> None:
    if not rel_se >= 0:
        raise ValueError(f"rel_se = {rel_se} must be >= 0 (0 runs to max_probes)")
    if min_probes < 2:
        raise ValueError(f"min_probes = {min_probes} must be >= 2 so a standard error exists")
    if max_probes < min_probes:
        raise ValueError(f"max_probes = {max_probes} must be >= min_probes = {min_probes}")
    if block < 1:
        raise ValueError(f"block = {block} must be >= 1")
