"""The largest scale s whose deviation stays within a target: the search both PAC-Bayes flatness (the noise σ) and
Jiang et al.'s sharpness (the box radius α) run.

From ``start`` the scale doubles while deviation(s) ≤ target and halves while it exceeds it, until one scale on each
side is known; then bisection on log s (mid = √(lo·hi)) until hi ≤ lo·(1 + rel_tol) or ``n_iter`` steps. It assumes the
deviation grows with s. Returns (lo, deviation(lo), bracketed); lo = 0 when no admissible scale was found.
"""

from __future__ import annotations

import math
from typing import Callable


def largest_admissible(
    deviation: Callable[[float], float],
    *,
    target: float,
    start: float,
    n_iter: int,
    rel_tol: float,
    max_doublings: int = 60,
) -> tuple[float, float, bool]:
    """Largest s with deviation(s) ≤ target, by doubling/halving from ``start`` then bisection on log s; (s, its
    deviation, bracketed). Assumes the deviation grows with s (true of the exact maximum over nested boxes)."""
    lo, hi, dev_lo, s = 0.0, math.inf, 0.0, start
    for _ in range(max_doublings):
        d = deviation(s)
        if d <= target:
            lo, dev_lo = s, d
            if hi < math.inf:
                break
            s *= 2
        else:
            hi = s
            if lo > 0:
                break
            s /= 2
    bracketed = lo > 0 and hi < math.inf
    if bracketed:
        for _ in range(n_iter):
            if hi <= lo * (1 + rel_tol):
                break
            mid = math.sqrt(lo * hi)
            d = deviation(mid)
            if d <= target:
                lo, dev_lo = mid, d
            else:
                hi = mid
    return lo, dev_lo, bracketed
