"""Confidence intervals and p-values of Spearman's ρ and Kendall's τ that stay valid in small groups and at |r| = 1.

Fisher's z, tanh(artanh r ± z_{(1+c)/2}·√(v/(n − k))) with the Fieller–Hartley–Pearson variances (v, k) = (1.06, 3)
for ρ and (0.437, 4) for τ, is a large-sample approximation: at |r| = 1 artanh r is infinite, and in a group of
8 runs a perfect rank agreement happens in 1 % of samples even when the true ρ is 0.85, so the interval collapses to
[1.00, 1.00]. Therefore:

- For n ≤ ``BELT_MAX_N`` runs the interval is a Neyman confidence belt under a Gaussian copula: for each true value
  θ on a grid of 2·``BELT_HALF`` − 1 points in [−1, 1], ``BELT_DRAWS`` samples of n runs are drawn from a bivariate normal
  with Pearson correlation r(θ) (r = 2 sin(πθ/6) for Spearman, r = sin(πθ/2) for Kendall, the Gaussian-copula
  identities; θ = ±(1 − (1 − u)²) with u evenly spaced in [0, 1], densest near ±1; the same normal draws for every
  θ), giving the acceptance region [q_{(1−c)/2}(θ), q_{(1+c)/2}(θ)] of the sample coefficient (made non-decreasing
  in θ). The CI is every θ whose region contains the observed r (linear interpolation between grid points). It is
  exact for Gaussian copulas up to Monte-Carlo error; at ρ = 1 it reads [0.89, 1.00] for n = 8 (at ρ_s = 0.89 a
  perfect rank agreement of 8 Gaussian runs has probability 2.6 %), never [1, 1].
  The two-sided p-value of "no association" is the share of the θ = 0 draws (independent ranks: the permutation
  distribution) at least as far from 0 as r: p = (1 + #{|r*| ≥ |r|}) / (1 + draws); beyond every draw it is the
  large-sample p below, but never below 2/n! (the exact chance of a perfect rank agreement or reversal). Draws use a fixed seed, so
  results are reproducible.
- For n > ``BELT_MAX_N`` it is Fisher's z with |r| capped at ``max_below_one(n)`` (half-way between 1 and the
  largest attainable value below 1), and p is Student's t with n − 2 df for ρ (as scipy.stats.spearmanr) and the
  normal approximation z = 3τ√(n(n − 1))/√(2(2n + 5)) for τ.

The belt depends only on (kind, n): ``belt_region`` (the acceptance regions at one confidence) and
``null_magnitudes`` (the θ = 0 draws) keep what the intervals and p-values read from it, once per process, so a
report computes each of its at most 2 × 47 belts once.

``BELT_MAX_N`` = 50: above it a perfect rank agreement needs a true coefficient within 0.01 of 1, where Fisher's z is
accurate (checked by the coverage tests in tests/analyze/stats/test_rank_intervals.py).
"""

from __future__ import annotations

import math
from functools import cache, lru_cache, partial

import numpy as np

from analyze.defaults import CONFIDENCE
from analyze.stats.tails import normal_quantile, normal_sf, t_sf

BELT_MAX_N = 50
BELT_DRAWS = 2000
BELT_HALF = 81  # grid points in [0, 1]: θ = 1 − (1 − u)², u evenly spaced, so the grid is densest near |θ| = 1
BELT_SEED = 20240601
KINDS = ("spearman", "kendall")
FISHER = {"spearman": (1.06, 3), "kendall": (0.437, 4)}  # (variance numerator, offset) of artanh r


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")


def max_below_one(n: int, kind: str = "spearman") -> float:
    """Half-way between 1 and the largest |coefficient| below 1 that n untied runs can give:
    ρ: 1 − 12/(n(n² − 1)) (one adjacent swap), τ: 1 − 4/(n(n − 1)) (one discordant pair)."""
    gap = 12.0 / (n * (n * n - 1)) if kind == "spearman" else 4.0 / (n * (n - 1))
    return 1.0 - gap / 2.0


def _ranks(a: np.ndarray) -> np.ndarray:
    """0-based ranks along each row of a (draws, n) array without ties, as float64 (one argsort and a scatter: the
    same integers as argsort(argsort(a)))."""
    order = np.argsort(a, axis=1)
    out = np.empty(a.shape, dtype=np.float64)
    np.put_along_axis(out, order, np.broadcast_to(np.arange(a.shape[1], dtype=np.float64), a.shape), axis=1)
    return out


def _centred(ranks: np.ndarray) -> np.ndarray:
    return ranks - ranks.mean(axis=1, keepdims=True)


def _spearman_rows(rx: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Spearman ρ of (draws, n) arrays without ties, ``rx`` the centred ranks of x."""
    ry = _centred(_ranks(y))
    return (rx * ry).sum(axis=1) / np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))


def _kendall_rows(x_order: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Kendall τ of (draws, n) arrays without ties, ``x_order`` = argsort of x along each row:
    τ = 1 − 4·(discordant pairs)/(n(n − 1)), a discordant pair being an inversion of y in x order."""
    n = y.shape[1]
    ys = np.take_along_axis(y, x_order, axis=1)
    discordant = np.zeros(y.shape[0])
    for j in range(1, n):
        discordant += (ys[:, :j] > ys[:, j : j + 1]).sum(axis=1)
    return 1.0 - 4.0 * discordant / (n * (n - 1))


def belt(kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(grid of true values θ, sorted sample coefficients per θ: shape (2·BELT_HALF − 1, BELT_DRAWS)) for n runs.

    A pure function of (kind, n): the draws use the fixed seed [BELT_SEED, n, kind]. The x side of every θ is the
    same draw, so its ranks (or order) are computed once."""
    _check(kind)
    half = 1.0 - (1.0 - np.linspace(0.0, 1.0, BELT_HALF)) ** 2
    theta = np.concatenate([-half[:0:-1], half])
    r = 2 * np.sin(np.pi * half / 6) if kind == "spearman" else np.sin(np.pi * half / 2)
    rng = np.random.default_rng([BELT_SEED, n, KINDS.index(kind)])
    x, z = rng.standard_normal((BELT_DRAWS, n)), rng.standard_normal((BELT_DRAWS, n))  # common to every θ
    if kind == "spearman":
        coefficients = partial(_spearman_rows, _centred(_ranks(x)))
    else:
        coefficients = partial(_kendall_rows, np.argsort(x, axis=1))
    out = np.empty((half.size, BELT_DRAWS))
    for i, ri in enumerate(r):
        out[i] = np.sort(coefficients(ri * x + np.sqrt(max(0.0, 1.0 - ri * ri)) * z))
    full = np.concatenate([-out[:0:-1, ::-1], out])  # the belt at −θ is the mirror of the belt at θ
    return theta, full


@cache
def belt_region(kind: str, n: int, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(θ grid, lower and upper ends of the acceptance regions at ``confidence``) of ``belt(kind, n)``: all an
    interval reads from the belt, 4 kB instead of its 2.6 MB, so each (kind, n, confidence) of a process is computed
    once and kept (a report meets at most 2 × 47 of them). Read-only arrays: every caller gets the same objects."""
    theta, draws = _belt_recent(kind, n)
    tail = (1.0 - confidence) / 2.0
    k = int(np.floor(tail * BELT_DRAWS))  # P(coefficient < lo) ≤ tail and P(coefficient > hi) ≤ tail
    lo = np.maximum.accumulate(draws[:, k])  # quantiles rise with θ; Monte-Carlo noise must not undo that
    hi = np.maximum.accumulate(draws[:, BELT_DRAWS - 1 - k])
    return _frozen(theta.copy()), _frozen(lo), _frozen(hi)


@cache
def null_magnitudes(kind: str, n: int) -> np.ndarray:
    """Sorted |coefficient| of the θ = 0 draws of ``belt(kind, n)`` (independent ranks: the permutation
    distribution), kept per (kind, n) like ``belt_region``; read-only."""
    return _frozen(np.sort(np.abs(_belt_recent(kind, n)[1][BELT_HALF - 1])))


@lru_cache(maxsize=2)
def _belt_recent(kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``belt`` for the region and the null of one (kind, n), which are asked for one after the other."""
    return belt(kind, n)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def rank_interval(r: float, n: int, confidence: float = CONFIDENCE, kind: str = "spearman") -> tuple[float, float]:
    """The confidence interval of a rank correlation r from n runs (module docstring); NaN when r is undefined or
    n < 4 (ρ) / n < 5 (τ)."""
    _check(kind)
    if r is None or not np.isfinite(r) or n < FISHER[kind][1] + 1:
        return float("nan"), float("nan")
    if abs(r) > 1.0 - 1e-12:  # a perfect agreement computed in floating point (τ = 0.9999999999999998) is ±1
        r = float(np.sign(r))
    if n <= BELT_MAX_N:
        theta, lo_q, hi_q = belt_region(kind, int(n), float(confidence))
        return _invert_lower(r, theta, hi_q), _invert_upper(r, theta, lo_q)
    variance, offset = FISHER[kind]
    cap = max_below_one(n, kind)
    z = float(np.arctanh(np.clip(r, -cap, cap)))
    half = normal_quantile(0.5 + confidence / 2) * np.sqrt(variance / (n - offset))
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def _invert_lower(r: float, theta: np.ndarray, hi_q: np.ndarray) -> float:
    """Smallest θ whose acceptance region's upper end reaches r."""
    j = int(np.searchsorted(hi_q, r, side="left"))  # hi_q is non-decreasing in θ
    if j == 0:
        return float(theta[0])
    if j >= theta.size:
        return float(theta[-1])
    step = hi_q[j] - hi_q[j - 1]
    frac = 1.0 if step <= 0 else (r - hi_q[j - 1]) / step
    return float(theta[j - 1] + frac * (theta[j] - theta[j - 1]))


def _invert_upper(r: float, theta: np.ndarray, lo_q: np.ndarray) -> float:
    """Largest θ whose acceptance region's lower end stays at or below r."""
    j = int(np.searchsorted(lo_q, r, side="right")) - 1
    if j >= theta.size - 1:
        return float(theta[-1])
    if j < 0:
        return float(theta[0])
    step = lo_q[j + 1] - lo_q[j]
    frac = 0.0 if step <= 0 else (r - lo_q[j]) / step
    return float(theta[j] + frac * (theta[j + 1] - theta[j]))


def rank_pvalue(r: float, n: int, kind: str = "spearman") -> float:
    """Two-sided p-value of "no association" for a rank correlation r from n runs (module docstring)."""
    _check(kind)
    if r is None or not np.isfinite(r) or n < 3:
        return float("nan")
    if n <= BELT_MAX_N:
        null = null_magnitudes(kind, int(n))
        extreme = int(null.size - np.searchsorted(null, abs(r) - 1e-12, side="left"))  # #{|r*| ≥ |r| − 1e-12}
        if extreme:
            return float((1 + extreme) / (1 + BELT_DRAWS))
        # beyond every draw: the asymptotic tail, never below the exact chance 2/n! of a perfect (anti-)agreement
        return float(min(1 / (1 + BELT_DRAWS), max(_asymptotic_pvalue(r, n, kind), 2.0 / math.factorial(n))))
    return _asymptotic_pvalue(r, n, kind)


def _asymptotic_pvalue(r: float, n: int, kind: str) -> float:
    if kind == "spearman":
        cap = max_below_one(n, kind)
        rc = float(np.clip(r, -cap, cap))
        t = rc * np.sqrt((n - 2) / (1 - rc * rc))
        return float(2 * t_sf(abs(t), n - 2))
    z = 3 * r * np.sqrt(n * (n - 1)) / np.sqrt(2 * (2 * n + 5))
    return float(2 * normal_sf(abs(z)))


def excludes_zero(interval: tuple[float | None, float | None]) -> int:
    """+1 when the interval lies above 0, −1 below 0, 0 when it contains 0 or is undefined."""
    lo, hi = interval
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0
