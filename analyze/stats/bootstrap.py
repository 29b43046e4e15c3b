"""Bootstrap (BCa) confidence intervals for Pearson r, Spearman ρ and Kendall τ-b, vectorised over resamples.

A bootstrap resample is represented by its multiplicities (how often each run was drawn), so every coefficient of
the resample is a weighted statistic of the original runs: Pearson from weighted moments, Spearman from the
resample's average ranks (a cumulative sum of the weights in sorted order), Kendall from weighted discordant-pair
counts. The jackknife values that BCa needs for its acceleration come from exact leave-one-out formulas (per-point
pair counts for Kendall and Spearman), so no statistic is recomputed n times.

Resamples are drawn exactly as ``scipy.stats.bootstrap(..., paired=True)`` draws them from the same generator
(``rng.integers(0, n, (B, n))``) and the interval follows its BCa formulas (Efron & Tibshirani 1993, 14.3), so the
two agree to rounding on the same seed — the tests check this.

Memory and time at scale (80,000 runs × 30 measures × 1,000 resamples): resamples are drawn and processed
``chunk`` at a time (default ``CHUNK`` = 100), so no array larger than ``chunk × n`` is ever formed; the
multiplicities are stored as uint8 (they virtually never exceed 255; int32 otherwise). Drawing in chunks consumes
the generator's stream exactly as one draw does, and every per-resample statistic is computed row by row, so the
results do not depend on ``chunk``: Spearman's and Kendall's are sums of integers (or quarter-integers) that are
exact in floating point, hence bit-identical for any chunk; Pearson's weighted moments agree to rounding (1e-15).
Kendall's weighted discordant-pair count uses a √n block decomposition (``_BlockDiscordance``) whose inner
products are dense matrix products (BLAS) on integer-valued float32 — exact below 2^24.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from scipy import sparse
from scipy.special import ndtr, ndtri

from analyze.stats._pairs import dense_rank, quadrant_counts, tau_b_from_counts, tie_groups
from analyze.defaults import CONFIDENCE

METHODS = ("pearson", "spearman", "kendall")
CHUNK = 100  # resamples processed together: bounds memory to a few arrays of CHUNK × n values
_EXACT_F32 = 2**24  # integers below this are exact in float32 (and so are their sums and products below it)


def resample_counts(rng: np.random.Generator, n: int, resamples: int, *, chunk: int = CHUNK) -> np.ndarray:
    """(resamples, n) multiplicities of the runs in each bootstrap resample.

    Identical to counting ``rng.integers(0, n, (resamples, n))`` (scipy's draw), but drawn ``chunk`` rows at a time
    (the generator's stream is the same) and stored as uint8 when every multiplicity is below 256.
    """
    parts: list[np.ndarray] = []
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        idx = rng.integers(0, n, (b, n))
        flat = (np.arange(b, dtype=np.int64)[:, None] * n + idx).ravel()
        counts = np.bincount(flat, minlength=b * n).reshape(b, n)
        parts.append(counts.astype(np.uint8 if counts.max(initial=0) < 256 else np.int32))
    if not parts:
        return np.zeros((0, n), dtype=np.uint8)
    dtype = np.result_type(*parts)
    return np.concatenate(parts).astype(dtype, copy=False)


def _chunks(counts: np.ndarray, chunk: int) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, counts.shape[0], chunk):
        yield start, counts[start : start + chunk]


@dataclass(frozen=True)
class Replicates:
    """A coefficient for P column pairs: on the data, on each bootstrap resample, and leaving each run out."""

    estimate: np.ndarray  # (P,)
    boot: np.ndarray | None  # (B, P)
    jack: np.ndarray | None  # (n, P)


def correlation_replicates(
    data: np.ndarray,
    pairs: np.ndarray,
    method: str,
    counts: np.ndarray | None,
    *,
    jackknife: bool = True,
    chunk: int = CHUNK,
) -> Replicates:
    """``method`` correlation of ``data[:, i]`` with ``data[:, j]`` for each (i, j) in ``pairs``.

    ``data`` must be complete (no NaN). ``counts`` (B, n) are the resample multiplicities, or None for no bootstrap;
    they are processed ``chunk`` resamples at a time (the result does not depend on ``chunk``).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, not {chunk}")
    fn = {"pearson": _pearson, "spearman": _spearman, "kendall": _kendall}[method]
    data = np.asarray(data, dtype=np.float64)
    return fn(data, np.asarray(pairs, dtype=np.int64).reshape(-1, 2), counts, jackknife, chunk)


# --- Pearson -----------------------------------------------------------------------------------------------------


def _pearson(data: np.ndarray, pairs: np.ndarray, counts: np.ndarray | None, jackknife: bool, chunk: int) -> Replicates:
    n = data.shape[0]
    z = data - data.mean(axis=0)  # centring keeps the moment sums well conditioned
    x, y = z[:, pairs[:, 0]], z[:, pairs[:, 1]]
    est = _r_from_moments(n, x.sum(0), y.sum(0), (x * x).sum(0), (y * y).sum(0), (x * y).sum(0))
    boot = None
    if counts is not None:
        boot = np.empty((counts.shape[0], len(pairs)))
        zz, xy = z * z, x * y
        for start, c in _chunks(counts, chunk):
            w = c.astype(np.float64)
            first, second, cross = w @ z, w @ zz, w @ xy  # (b, d), (b, d), (b, P)
            boot[start : start + w.shape[0]] = _r_from_moments(
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


def _spearman(data: np.ndarray, pairs: np.ndarray, counts: np.ndarray | None, jackknife: bool, chunk: int) -> Replicates:
    cols = np.unique(pairs)
    ranks = {c: _avg_ranks(data[:, c]) for c in cols}
    est = np.array([_pearson_1d(ranks[i], ranks[j]) for i, j in pairs])
    boot = None
    if counts is not None:
        boot = np.empty((counts.shape[0], len(pairs)))
        rankers = {c: _ResampleRanks(data[:, c]) for c in cols}
        for start, c in _chunks(counts, chunk):
            boot[start : start + c.shape[0]] = _spearman_chunk(c, pairs, rankers)
    jack = None
    if jackknife:
        jack = np.column_stack([_spearman_jackknife(data[:, i], data[:, j], ranks[i], ranks[j]) for i, j in pairs])
    return Replicates(est, boot, jack)


def _spearman_chunk(counts: np.ndarray, pairs: np.ndarray, rankers: dict[int, "_ResampleRanks"]) -> np.ndarray:
    """Spearman ρ of each pair on each resample of the chunk: the weighted Pearson correlation of the resample's
    average ranks, Σ w (R − m)(S − m) / sqrt(Σ w (R − m)² Σ w (S − m)²), m = (n + 1)/2.

    Ranks minus m are half-integers and w (R − m) too, exact in float32 while n · max w < 2^23 (float64
    otherwise); the sums of products are accumulated in float64, where every term is a multiple of ¼ below 2^51,
    so they are exact whatever their order. The second column of a pair (the target, shared by every pair of a
    ranking) is ranked once per chunk and kept in run order while a later pair needs it; the first is ranked in
    its own sorted order and the second gathered into it.
    """
    n = counts.shape[1]
    exact32 = n * float(counts.max(initial=0)) < 2**23
    w = counts.astype(np.float32 if exact32 else np.float64)  # (b, n)
    mean = (n + 1) / 2.0
    left = dict(zip(*np.unique(pairs[:, 1], return_counts=True)))
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    out = np.empty((counts.shape[0], len(pairs)))
    for p, (i, j) in enumerate(pairs):
        if j not in cache:
            centred, ws = rankers[j].sorted_centred(w, mean)
            var = _dot_rows(ws * centred, centred)
            in_run_order = np.empty_like(centred)
            in_run_order[:, rankers[j].order] = centred
            cache[j] = (in_run_order, var)
        cj, vj = cache[j]
        ci, ws = rankers[i].sorted_centred(w, mean)
        weighted = ws * ci
        vi = _dot_rows(weighted, ci)
        cov = _dot_rows(weighted, np.take(cj, rankers[i].order, axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, p] = np.where((vi > 0) & (vj > 0), cov / np.sqrt(vi * vj), np.nan)
        left[j] -= 1
        if left[j] == 0:
            del cache[j]
    return out


def _dot_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Σ_i a[r, i] b[r, i] per row, products and sums in float64 (a float32 product could round)."""
    return np.einsum("ri,ri->r", a, b, dtype=np.float64, casting="safe")


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


class _ResampleRanks:
    """Average ranks of one column's runs within resamples: a run's rank is the weight of the runs below it plus
    (weight of its tie group + 1)/2, the rank its copies share (unused where its weight is 0)."""

    def __init__(self, v: np.ndarray):
        self.order, starts, group = tie_groups(v)
        n = v.shape[0]
        self.ties = starts.size != n
        ends = np.append(starts[1:], n)
        self.group_start, self.group_end = starts[group], ends[group]  # per sorted position

    def sorted_centred(self, w: np.ndarray, mean: float) -> tuple[np.ndarray, np.ndarray]:
        """(ranks − mean, weights), (b, n) in this column's sorted order, for integer weights ``w`` (b, n) (float32
        when every value involved is exact in it, see ``_spearman_chunk``)."""
        ws = np.take(w, self.order, axis=1)
        cum = np.cumsum(ws, axis=1)  # partial sums ≤ n: exact in float32 (see _spearman_chunk)
        if self.ties:
            before = np.zeros((cum.shape[0], cum.shape[1] + 1), dtype=cum.dtype)
            before[:, 1:] = cum
            below = before[:, self.group_start]
            rank = before[:, self.group_end]
            rank -= below
            rank += 1.0
            rank *= 0.5
            rank += below
            rank -= mean
        else:  # rank − mean = cum − (ws − 1)/2 − mean, every intermediate a half-integer below n
            rank = cum
            rank -= ws * 0.5
            rank += 0.5 - mean
        return rank, ws


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


def _kendall(data: np.ndarray, pairs: np.ndarray, counts: np.ndarray | None, jackknife: bool, chunk: int) -> Replicates:
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
            boot[:, p] = _kendall_boot(x, y, counts, chunk)
    return Replicates(est, boot, jack)


def _kendall_boot(x: np.ndarray, y: np.ndarray, counts: np.ndarray, chunk: int) -> np.ndarray:
    """τ-b of (x, y) on each resample: (n0 − n1 − n2 + n3 − 2D) / sqrt((n0 − n1)(n0 − n2)) with n0 the resample's
    pairs, n1/n2/n3 its pairs tied in x / y / both (copies of one run are tied) and D its discordant pairs."""
    n = x.shape[0]
    n0 = n * (n - 1) // 2
    counter = _BlockDiscordance(x, y)
    gx, gy = dense_rank(x), dense_rank(y)
    gxy = dense_rank(gx * (int(gy.max()) + 1) + gy)
    out = np.empty(counts.shape[0])
    for start, c in _chunks(counts, chunk):
        wt = np.ascontiguousarray(c.T, dtype=np.float32)  # (n, b) integers, exact
        d = counter.discordant(wt)
        own = _self_pairs(wt, n)
        t1, t2, t3 = (own + _shared_pairs(wt, g) for g in (gx, gy, gxy))
        out[start : start + wt.shape[1]] = tau_b_from_counts(n0, n0 - t1 - t2 + t3 - 2 * d, t1, t2)
    return out


def _self_pairs(wt: np.ndarray, n: int) -> np.ndarray:
    """Σ_i w_i(w_i − 1)/2 = (Σ w² − n)/2 per resample (Σ w = n): pairs formed by the copies of one run."""
    return (np.rint(_dot_rows(wt.T, wt.T)).astype(np.int64) - n) // 2


def _shared_pairs(wt: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Tied pairs between distinct runs that share a value: Σ_g [G(G−1)/2 − Σ_{i∈g} w_i(w_i−1)/2], G = Σ_{i∈g} w_i."""
    sizes = np.bincount(groups)
    shared = np.flatnonzero(sizes[groups] > 1)
    if not shared.size:
        return np.zeros(wt.shape[1], dtype=np.int64)
    sub = groups[shared]
    order = np.argsort(sub, kind="stable")
    sg = sub[order]
    starts = np.flatnonzero(np.r_[True, sg[1:] != sg[:-1]])
    w = np.rint(wt[shared]).astype(np.int64)
    g = np.add.reduceat(w[order], starts, axis=0)
    return (g * (g - 1) // 2).sum(axis=0) - (w * (w - 1) // 2).sum(axis=0)


class _BlockDiscordance:
    """Weighted discordant-pair totals ``D[b] = Σ_{i,j} W[i,b] W[j,b] [x_i < x_j][y_i > y_j]`` over distinct runs,
    for many weight columns (bootstrap resamples), by a √n block decomposition.

    Runs are put in (x, y) order (ties in x by y, so tied-x pairs never count) and cut into K blocks of s ≈ 1.5 √n
    consecutive positions; separately, they are put in (y, position) order and cut into K bins. A discordant pair
    (position i < j, y_i > y_j) is then exactly one of: (1) both in one block — a dense s × s 0/1 matrix per block;
    (2) different blocks, one bin — likewise per bin; (3) different blocks and bins — counted from the (block, bin)
    weight table M as Σ M[a, q] · Σ_{a' < a, q' > q} M[a', q'] (bin order is (y, position), so two runs tied in y
    in different blocks sit in bins ordered like their blocks and are never counted). Parts (1) and (2) are batched
    matrix products on integer-valued float32 (exact: every value stays far below 2^24); (3) is in float64, exact
    below 2^53. Cost O(n √n b) flops in BLAS plus O(n b) memory traffic, against O(n log² n b) gathers for a merge.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, scale: float = 1.5):
        n = x.shape[0]
        self.n = n
        self.order = np.lexsort((y, x))
        s = max(8, int(np.ceil(scale * np.sqrt(n))))  # block size: ~1.5 √n balances the parts' costs (benchmarked)
        k = -(-n // s)
        self.s, self.k = s, k
        big = k * s
        yr = np.full(big, n, dtype=np.int64)  # padding: zero-weight runs above every y
        yr[:n] = dense_rank(y)[self.order]
        self.ybins = np.argsort(yr, kind="stable")  # positions in (y, position) order
        blocks = yr.reshape(k, s)
        upper = np.triu(np.ones((s, s), dtype=bool), 1)
        self.within_block = ((blocks[:, :, None] > blocks[:, None, :]) & upper).astype(np.float32)
        by = yr[self.ybins].reshape(k, s)
        bb = (self.ybins // s).reshape(k, s)
        self.within_bin = ((by[:, :, None] > by[:, None, :]) & (bb[:, :, None] < bb[:, None, :])).astype(np.float32)
        cell = np.empty(big, dtype=np.int64)
        cell[self.ybins] = (np.arange(big) // s)  # bin of each position
        cell += (np.arange(big) // s) * k  # block of each position
        self.table = sparse.csr_matrix(
            (np.ones(big, dtype=np.float32), (cell, np.arange(big))), shape=(k * k, big)
        )

    def discordant(self, weights_t: np.ndarray) -> np.ndarray:
        """D for each column of ``weights_t`` (n, b) integer multiplicities (float32)."""
        b = weights_t.shape[1]
        if self.s * float(weights_t.max(initial=0)) >= _EXACT_F32 or self.n >= _EXACT_F32:
            raise ValueError("multiplicities too large for exact float32 block products")
        w = np.zeros((self.k * self.s, b), dtype=np.float32)
        w[: self.n] = np.take(weights_t, self.order, axis=0)
        total = _block_quadratic(self.within_block, w.reshape(self.k, self.s, b))
        total += _block_quadratic(self.within_bin, np.take(w, self.ybins, axis=0).reshape(self.k, self.s, b))
        # part (3): m[r, a, q] = weight of resample r in block a and bin q (≤ n: exact); cumulative sums run along
        # the contiguous last axis (numpy's cumsum along any other axis walks with a stride and is ~5× slower)
        m = np.ascontiguousarray((self.table @ w).T).reshape(b, self.k, self.k)
        above = m.sum(axis=2, keepdims=True) - np.cumsum(m, axis=2)  # same block, bins strictly above
        above = np.ascontiguousarray(above.transpose(0, 2, 1))  # [r, q, a]
        before = np.cumsum(above, axis=2)
        before -= above  # ... and blocks strictly before
        total += np.einsum("rqa,rqa->r", m.transpose(0, 2, 1), before, dtype=np.float64, casting="safe")
        return np.rint(total).astype(np.int64)


def _block_quadratic(mats: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ_blocks w_blockᵀ A_block w_block per column: (K, s, s) 0/1 matrices, (K, s, b) weights -> (b,) float64.

    The batched product runs in torch (a dependency of the package): numpy's stacked matmul does not call BLAS
    per block and is ~25× slower here. Where torch cannot be imported numpy computes the same sums (the products
    are exact on these integer-valued float32 arrays, so the result does not depend on which one ran).
    """
    try:
        import torch
    except ImportError:
        prod = np.matmul(mats, w)
    else:
        prod = torch.bmm(torch.from_numpy(mats), torch.from_numpy(w)).numpy()
    prod *= w
    return prod.sum(axis=(0, 1), dtype=np.float64)


# --- BCa ---------------------------------------------------------------------------------------------------------


def bca_interval(replicates: Replicates, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
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
