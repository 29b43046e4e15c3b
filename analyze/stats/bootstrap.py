"""Bootstrap (BCa) confidence intervals for Pearson r, Spearman ρ and Kendall τ-b, vectorised over resamples.

A bootstrap resample is represented by its multiplicities (how often each run was drawn), so every coefficient of
the resample is a weighted statistic of the original runs: Pearson from weighted moments, Spearman from the
resample's average ranks (a cumulative sum of the weights in sorted order), Kendall from weighted discordant-pair
counts (``_pairs.DiscordanceCounter``). The jackknife values that BCa needs for its acceleration come from exact
leave-one-out formulas (per-point pair counts for Kendall and Spearman), so no statistic is recomputed n times.

Resamples are drawn exactly as ``scipy.stats.bootstrap(..., paired=True)`` draws them from the same generator
(``rng.integers(0, n, (B, n))``) and the interval follows its BCa formulas (Efron & Tibshirani 1993, 14.3), so the
two agree to rounding on the same seed — the tests check this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from analyze.stats._pairs import DiscordanceCounter, dense_rank, quadrant_counts, tau_b_from_counts, tie_groups

METHODS = ("pearson", "spearman", "kendall")
_CHUNK = 100  # resamples processed together: bounds memory to ~ _CHUNK × n × 8 bytes per array


def resample_counts(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """(resamples, n) int32 multiplicities of the runs in each bootstrap resample (one draw, as scipy does)."""
    idx = rng.integers(0, n, (resamples, n))
    flat = (np.arange(resamples, dtype=np.int64)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.int32)


@dataclass(frozen=True)
class Replicates:
    """A coefficient for P column pairs: on the data, on each bootstrap resample, and leaving each run out."""

    estimate: np.ndarray  # (P,)
    boot: np.ndarray | None  # (B, P)
    jack: np.ndarray | None  # (n, P)


def correlation_replicates(
    data: np.ndarray, pairs: np.ndarray, method: str, counts: np.ndarray | None, *, jackknife: bool = True
) -> Replicates:
    """``method`` correlation of ``data[:, i]`` with ``data[:, j]`` for each (i, j) in ``pairs``.

    ``data`` must be complete (no NaN). ``counts`` (B, n) are the resample multiplicities, or None for no bootstrap.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    fn = {"pearson": _pearson, "spearman": _spearman, "kendall": _kendall}[method]
    return fn(np.asarray(data, dtype=np.float64), np.asarray(pairs, dtype=np.int64).reshape(-1, 2), counts, jackknife)


# --- Pearson -----------------------------------------------------------------------------------------------------


def _pearson(data: np.ndarray, pairs: np.ndarray, counts: np.ndarray | None, jackknife: bool) -> Replicates:
    n = data.shape[0]
    z = data - data.mean(axis=0)  # centring keeps the moment sums well conditioned
    x, y = z[:, pairs[:, 0]], z[:, pairs[:, 1]]
    est = _r_from_moments(n, x.sum(0), y.sum(0), (x * x).sum(0), (y * y).sum(0), (x * y).sum(0))
    boot = None
    if counts is not None:
        first = counts @ z  # (B, d)
        second = counts @ (z * z)
        cross = counts @ (x * y)  # (B, P)
        boot = _r_from_moments(
            n, first[:, pairs[:, 0]], first[:, pairs[:, 1]], second[:, pairs[:, 0]], second[:, pairs[:, 1]], cross
        )
    jack = None
    if jackknife:
        sx, sy, sxx, syy, sxy = x.sum(0), y.sum(0), (x * x).sum(0), (y * y).sum(0), (x * y).sum(0)
        jack = _r_from_moments(n - 1, sx - x, sy - y, sxx - x * x, syy - y * y, sxy - x * y)
    return Replicates(est, boot, jack)


def _r_from_moments(n: float, sx, sy, sxx, syy, sxy) -> np.ndarray:
    cov = sxy - sx * sy / n
    vx, vy = sxx - sx * sx / n, syy - sy * sy / n
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(vx * vy)
    return np.clip(np.where((vx > 0) & (vy > 0), r, np.nan), -1.0, 1.0)


# --- Spearman ----------------------------------------------------------------------------------------------------


def _spearman(data: np.ndarray, pairs: np.ndarray, counts: np.ndarray | None, jackknife: bool) -> Replicates:
    n = data.shape[0]
    cols = np.unique(pairs)
    ranks = {c: _avg_ranks(data[:, c]) for c in cols}
    est = np.array([_pearson_1d(ranks[i], ranks[j]) for i, j in pairs])
    boot = None
    if counts is not None:
        boot = np.empty((counts.shape[0], len(pairs)))
        groups = {c: tie_groups(data[:, c]) for c in cols}
        for start in range(0, counts.shape[0], _CHUNK):
            w = counts[start : start + _CHUNK].astype(np.float64)
            rr = {c: _resample_ranks(w, *groups[c]) for c in cols}
            mean = (n + 1) / 2.0  # average ranks of n points always have this mean
            centred = {c: rr[c] - mean for c in cols}
            var = {c: np.einsum("bi,bi,bi->b", w, centred[c], centred[c]) for c in cols}
            for p, (i, j) in enumerate(pairs):
                cov = np.einsum("bi,bi,bi->b", w, centred[i], centred[j])
                with np.errstate(invalid="ignore", divide="ignore"):
                    boot[start : start + w.shape[0], p] = np.where(
                        (var[i] > 0) & (var[j] > 0), cov / np.sqrt(var[i] * var[j]), np.nan
                    )
    jack = None
    if jackknife:
        jack = np.column_stack([_spearman_jackknife(data[:, i], data[:, j], ranks[i], ranks[j]) for i, j in pairs])
    return Replicates(est, boot, jack)


def _avg_ranks(v: np.ndarray) -> np.ndarray:
    order, starts, group = tie_groups(v)
    ends = np.append(starts[1:], v.shape[0])
    avg = (starts + 1 + ends) / 2.0  # 1-based average rank of each tie group
    out = np.empty(v.shape[0])
    out[order] = avg[group]
    return out


def _pearson_1d(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float(np.clip((a * b).sum() / den, -1, 1)) if den > 0 else float("nan")


def _resample_ranks(w: np.ndarray, order: np.ndarray, starts: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Average rank, within each resample, of every original run (the rank its copies get; unused if w = 0)."""
    ws = w[:, order]
    gsum = ws if starts.size == w.shape[1] else np.add.reduceat(ws, starts, axis=1)  # weight of each tie group
    before = np.cumsum(gsum, axis=1)
    before -= gsum
    rank = before + (gsum + 1.0) / 2.0
    if starts.size != w.shape[1]:
        rank = rank[:, group]
    out = np.empty_like(rank)
    out[:, order] = rank
    return out


def _spearman_jackknife(x: np.ndarray, y: np.ndarray, r: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Spearman ρ leaving out each run in turn, exactly, in O(n log² n).

    Leaving out run i lowers the average rank of every run above it by 1 and of every run tied with it by ½, so
    Σ r'_j s'_j = Σ r s − r_i s_i − Σ r_j b_j − Σ a_j s_j + Σ a_j b_j with a, b those decrements; the last sum
    needs, for each i, how many runs lie above/tied in both variables (``quadrant_counts``).
    """
    n = x.shape[0]
    m = n - 1
    q = quadrant_counts(x, y)  # q[i, sx, sy]: others by sign of (x_j - x_i, y_j - y_i)
    rb = _above_sum(y, r)  # Σ_{j≠i} r_j b_j
    as_ = _above_sum(x, s)  # Σ_{j≠i} a_j s_j
    ab = q[:, 2, 2] + 0.5 * q[:, 2, 1] + 0.5 * q[:, 1, 2] + 0.25 * q[:, 1, 1]
    cross = (r * s).sum() - r * s - rb - as_ + ab
    mean_sq = m * (n / 2.0) ** 2
    sum_k2 = m * (m + 1) * (2 * m + 1) / 6.0
    vx = sum_k2 - _tie_term_loo(x) - mean_sq
    vy = sum_k2 - _tie_term_loo(y) - mean_sq
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (cross - mean_sq) / np.sqrt(vx * vy)
    return np.clip(np.where((vx > 0) & (vy > 0), rho, np.nan), -1, 1)


def _above_sum(v: np.ndarray, other_rank: np.ndarray) -> np.ndarray:
    """For each i: Σ_{j: v_j > v_i} R_j + ½ Σ_{j≠i: v_j = v_i} R_j."""
    order, starts, group = tie_groups(v)
    gsum = np.add.reduceat(other_rank[order], starts)
    above = gsum[::-1].cumsum()[::-1] - gsum  # strictly greater groups
    g = np.empty(v.shape[0], dtype=np.int64)
    g[order] = group
    return above[g] + 0.5 * (gsum[g] - other_rank)


def _tie_term_loo(v: np.ndarray) -> np.ndarray:
    """Σ_g (t_g³ − t_g)/12 over the tie groups of v once run i is removed, for each i."""
    _, inv, cnt = np.unique(v, return_inverse=True, return_counts=True)
    t = cnt.astype(np.float64)
    total = ((t**3 - t) / 12.0).sum()
    ti = t[inv.reshape(-1)]
    return total - (ti**3 - ti) / 12.0 + ((ti - 1) ** 3 - (ti - 1)) / 12.0


# --- Kendall -----------------------------------------------------------------------------------------------------


def _kendall(data: np.ndarray, pairs: np.ndarray, counts: np.ndarray | None, jackknife: bool) -> Replicates:
    n = data.shape[0]
    est = np.empty(len(pairs))
    jack = np.empty((n, len(pairs))) if jackknife else None
    boot = np.empty((counts.shape[0], len(pairs))) if counts is not None else None
    for p, (i, j) in enumerate(pairs):
        x, y = data[:, i], data[:, j]
        q = quadrant_counts(x, y)
        s_i = q[:, 0, 0] + q[:, 2, 2] - q[:, 0, 2] - q[:, 2, 0]  # concordant minus discordant partners of i
        tx_i = q[:, 1, :].sum(axis=1)
        ty_i = q[:, :, 1].sum(axis=1)
        n0 = n * (n - 1) // 2
        s, n1, n2 = s_i.sum() // 2, tx_i.sum() // 2, ty_i.sum() // 2
        est[p] = tau_b_from_counts(n0, s, n1, n2)
        if jack is not None:
            m0 = (n - 1) * (n - 2) // 2
            jack[:, p] = tau_b_from_counts(m0, s - s_i, n1 - tx_i, n2 - ty_i)
        if boot is not None:
            boot[:, p] = _kendall_boot(x, y, counts)
    return Replicates(est, boot, jack)


def _kendall_boot(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    n0 = n * (n - 1) // 2
    counter = DiscordanceCounter(x, y)
    gx, gy = dense_rank(x), dense_rank(y)
    gxy = dense_rank(gx * (int(gy.max()) + 1) + gy)
    out = np.empty(counts.shape[0])
    for start in range(0, counts.shape[0], _CHUNK):
        wt = np.ascontiguousarray(counts[start : start + _CHUNK].T)  # (n, b): row gathers stay contiguous
        d = counter.discordant(wt)
        t1, t2, t3 = (_tied_pairs(wt, g) for g in (gx, gy, gxy))
        out[start : start + wt.shape[1]] = tau_b_from_counts(n0, n0 - t1 - t2 + t3 - 2 * d, t1, t2)
    return out


def _tied_pairs(wt: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Σ over tie groups of G(G−1)/2, G the resample's weight in the group (copies of one run are tied too).

    Singleton groups contribute w(w−1)/2; only runs that share a value with another run need a group sum.
    """
    w = wt.astype(np.int64)
    total = (w * (w - 1) // 2).sum(axis=0)
    sizes = np.bincount(groups)
    shared = np.flatnonzero(sizes[groups] > 1)
    if shared.size:
        sub = groups[shared]
        order = np.argsort(sub, kind="stable")
        sg = sub[order]
        starts = np.flatnonzero(np.r_[True, sg[1:] != sg[:-1]])
        g = np.add.reduceat(w[shared[order]], starts, axis=0)
        total += (g * (g - 1) // 2).sum(axis=0) - (w[shared] * (w[shared] - 1) // 2).sum(axis=0)
    return total


# --- BCa ---------------------------------------------------------------------------------------------------------


def bca_interval(replicates: Replicates, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided BCa interval per pair (Efron & Tibshirani 1993, eq. 14.10 and 14.15), as scipy computes it.

    NaN where the bootstrap distribution is degenerate (e.g. a constant column) or no resamples were drawn.
    """
    est, boot, jack = replicates.estimate, replicates.boot, replicates.jack
    if boot is None or jack is None or boot.shape[0] == 0:
        nan = np.full(est.shape, np.nan)
        return nan, nan.copy()
    b = boot.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = ((boot < est).sum(0) + (boot <= est).sum(0)) / (2.0 * b)
        z0 = ndtri(pct)
        u = (jack.shape[0] - 1) * (jack.mean(axis=0) - jack)
        a = (u**3).sum(0) / 6.0 / ((u**2).sum(0) ** 1.5)
        alpha = (1 - confidence) / 2
        za = ndtri(alpha)
        lo_p = ndtr(z0 + (z0 + za) / (1 - a * (z0 + za)))
        hi_p = ndtr(z0 + (z0 - za) / (1 - a * (z0 - za)))
    bad = ~np.isfinite(est) | np.isnan(boot).any(0) | ~np.isfinite(lo_p) | ~np.isfinite(hi_p)
    lo = _quantile_cols(boot, np.where(bad, 0.5, lo_p))
    hi = _quantile_cols(boot, np.where(bad, 0.5, hi_p))
    lo[bad], hi[bad] = np.nan, np.nan
    return lo, hi


def _quantile_cols(values: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Column-wise quantile at a different probability per column (linear interpolation, numpy's default)."""
    s = np.sort(values, axis=0)
    pos = probs * (s.shape[0] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, s.shape[0] - 1)
    cols = np.arange(s.shape[1])
    frac = pos - lo
    return s[lo, cols] * (1 - frac) + s[hi, cols] * frac
