"""Counting ordered pairs by sorting, never by enumerating them: the engine under Kendall's τ, its jackknife and
bootstrap, and the conditional mutual information.

The core is ``smaller_before``: for a sequence v and (optionally) rows of weights W, the weighted number of earlier
elements with a strictly smaller value, ``out[b, i] = Σ_{j<i, v_j<v_i} W[b, j]``. It is computed level by level
as in merge sort: at each level every element of a right half-block counts the smaller elements of its left
sibling with one ``searchsorted`` into the sorted left half, so the cost is O(n log² n) numpy work, and the
positions found do not depend on the weights — many weight rows (bootstrap resamples, group indicators) share them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def dense_rank(values: np.ndarray) -> np.ndarray:
    """0-based dense ranks (equal values share a rank)."""
    _, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


@dataclass(frozen=True)
class _Level:
    left_sorted: np.ndarray  # positions of the left half-blocks, sorted by (block, value)
    right: np.ndarray  # positions of the right half-blocks
    lo: np.ndarray  # for each right element: start of the counted range in left_sorted
    hi: np.ndarray  # ... and its end (exclusive)


def _levels(v: np.ndarray, smaller: bool) -> list[_Level]:
    """Per merge level, where each right-half element's counted range lies among its left sibling's values."""
    n = v.shape[0]
    k = int(v.max()) + 2 if n else 1
    pos = np.arange(n, dtype=np.int64)
    out: list[_Level] = []
    h = 1
    while h < n:
        block = pos // (2 * h)
        is_right = ((pos // h) & 1).astype(bool)
        left, right = pos[~is_right], pos[is_right]
        if right.size:
            keys = block[left] * k + v[left]
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            rb = block[right] * k
            if smaller:  # left values strictly below v_i: [block start, first key >= v_i)
                lo = np.searchsorted(keys, rb, side="left")
                hi = np.searchsorted(keys, rb + v[right], side="left")
            else:  # left values strictly above v_i: (last key <= v_i, block end)
                lo = np.searchsorted(keys, rb + v[right], side="right")
                hi = np.searchsorted(keys, rb + k, side="left")
            out.append(_Level(left[order], right, lo, hi))
        h *= 2
    return out


def smaller_before(v: np.ndarray, *, greater: bool = False) -> np.ndarray:
    """``out[i] = #{j < i : v_j < v_i}`` (``> v_i`` with ``greater=True``) for integer ranks ``v``."""
    v = np.asarray(v, dtype=np.int64)
    out = np.zeros(v.shape[0], dtype=np.int64)
    for lv in _levels(v, smaller=not greater):
        out[lv.right] += lv.hi - lv.lo
    return out


def weighted_smaller_before(v: np.ndarray, weights: np.ndarray, *, greater: bool = False) -> np.ndarray:
    """``out[b, i] = Σ_{j<i, v_j<v_i} weights[b, j]`` (``>`` with ``greater=True``); weights is (B, n) integer."""
    return PrefixCounter(v, greater=greater).weighted(weights)


class PrefixCounter:
    """``smaller_before`` for one sequence, precomputed once and applied to many weight matrices."""

    def __init__(self, v: np.ndarray, *, greater: bool = False):
        self.levels = _levels(np.asarray(v, dtype=np.int64), smaller=not greater)

    def weighted(self, weights: np.ndarray) -> np.ndarray:
        # (n, B) layout: every gather below copies whole contiguous rows, several times faster than columns
        weights = np.asarray(weights)
        # int32 is exact while every prefix sum of a weight row stays below 2^31 (checked)
        dtype = np.int32 if np.abs(weights).sum(axis=1, dtype=np.int64).max(initial=0) < 2**31 else np.int64
        wt = np.ascontiguousarray(weights.T, dtype=dtype)
        out = np.zeros(wt.shape, dtype=dtype)
        for lv in self.levels:
            cum = np.zeros((lv.left_sorted.size + 1, wt.shape[1]), dtype=dtype)
            np.cumsum(wt[lv.left_sorted], axis=0, out=cum[1:])
            diff = cum[lv.hi]
            diff -= cum[lv.lo]
            out[lv.right] += diff
        return np.ascontiguousarray(out.T, dtype=np.int64)


class DiscordanceCounter:
    """Weighted discordant-pair totals of one (x, y) pair for many weight columns (bootstrap resamples).

    ``D[b] = Σ_{i<j} W[i,b] W[j,b] [x_i < x_j][y_i > y_j]`` over distinct runs; a run drawn twice is tied with its
    copy and never discordant. The merge levels are precomputed once; ``discordant`` applies them to a weight
    matrix laid out (n, B) so that every gather copies whole contiguous rows.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.order = np.lexsort((y, x))  # x ascending, ties in x by y ascending: tied-x pairs never count
        self.levels = _levels(dense_rank(y[self.order]), smaller=False)

    def discordant(self, weights_t: np.ndarray) -> np.ndarray:
        w = np.ascontiguousarray(weights_t[self.order], dtype=np.int32)
        total = np.zeros(w.shape[1], dtype=np.int64)
        for lv in self.levels:
            # int32 is exact: a cumulative weight is at most n, times one weight (≤ ~20) stays far below 2^31
            cum = np.zeros((lv.left_sorted.size + 1, w.shape[1]), dtype=np.int32)
            np.cumsum(w[lv.left_sorted], axis=0, out=cum[1:])
            diff = cum[lv.hi]
            diff -= cum[lv.lo]
            diff *= w[lv.right]
            total += diff.sum(axis=0, dtype=np.int64)
        return total


def tie_groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, starts, group_of_sorted) for the groups of equal values: ``values[order]`` is sorted, group g spans
    ``order[starts[g]:starts[g+1]]``."""
    order = np.argsort(values, kind="stable")
    sv = values[order]
    new = np.ones(sv.shape[0], dtype=bool)
    new[1:] = sv[1:] != sv[:-1]
    starts = np.flatnonzero(new)
    return order, starts, np.cumsum(new) - 1


def quadrant_counts(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """For every point i, the (3, 3) table of the other points j by (sign(x_j − x_i), sign(y_j − y_i)).

    Index 0 is "smaller", 1 "equal", 2 "larger". ``out[i].sum() == n − 1``. O(n log² n).
    """
    n = x.shape[0]
    rx, ry = dense_rank(x), dense_rank(y)
    # strictly smaller in both: order by x asc and, within tied x, y desc, then count smaller y before.
    order = np.lexsort((-ry, rx))
    ll = np.empty(n, dtype=np.int64)
    ll[order] = smaller_before(ry[order])
    cx, cy = np.bincount(rx), np.bincount(ry)
    less_x = np.concatenate([[0], np.cumsum(cx)])[rx]
    less_y = np.concatenate([[0], np.cumsum(cy)])[ry]
    eq_x, eq_y = cx[rx] - 1, cy[ry] - 1
    xy = rx * (int(ry.max()) + 1) + ry
    eq_xy = np.bincount(dense_rank(xy))[dense_rank(xy)] - 1
    # within the y-tie group, how many have smaller x (and vice versa): rank inside the group
    less_x_eq_y = _smaller_within_groups(ry, rx)
    eq_x_less_y = _smaller_within_groups(rx, ry)
    t = np.empty((n, 3, 3), dtype=np.int64)
    t[:, 0, 0] = ll
    t[:, 0, 1] = less_x_eq_y
    t[:, 1, 0] = eq_x_less_y
    t[:, 1, 1] = eq_xy
    t[:, 0, 2] = less_x - ll - less_x_eq_y
    t[:, 2, 0] = less_y - ll - eq_x_less_y
    t[:, 1, 2] = eq_x - eq_x_less_y - eq_xy
    t[:, 2, 1] = eq_y - less_x_eq_y - eq_xy
    t[:, 2, 2] = (n - 1) - t.reshape(n, 9)[:, [0, 1, 2, 3, 4, 5, 6, 7]].sum(axis=1)
    return t


def _smaller_within_groups(group: np.ndarray, value: np.ndarray) -> np.ndarray:
    """For each i, #{j : group_j == group_i, value_j < value_i} (integer ranks)."""
    k = int(value.max()) + 1
    keys = group * k + value
    sk = np.sort(keys)
    return np.searchsorted(sk, keys, side="left") - np.searchsorted(sk, group * k, side="left")


def pair_counts(x: np.ndarray, y: np.ndarray) -> tuple[int, int, int, int, int]:
    """(n0, concordant, discordant, tied in x, tied in y) over unordered pairs, ties counted as in τ-b.

    "tied in x" includes pairs tied in both. O(n log² n).
    """
    n = x.shape[0]
    n0 = n * (n - 1) // 2
    rx, ry = dense_rank(x), dense_rank(y)
    order = np.lexsort((ry, rx))
    d = int(smaller_before(ry[order], greater=True).sum())
    tx = int((np.bincount(rx) * (np.bincount(rx) - 1) // 2).sum())
    ty = int((np.bincount(ry) * (np.bincount(ry) - 1) // 2).sum())
    cxy = np.bincount(dense_rank(rx * (int(ry.max()) + 1) + ry))
    txy = int((cxy * (cxy - 1) // 2).sum())
    c = n0 - tx - ty + txy - d
    return n0, c, d, tx, ty


def tau_b_from_counts(n0: np.ndarray, s: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """τ-b = (C − D) / sqrt((n0 − n1)(n0 − n2)); NaN where either variable is constant."""
    n0, s, tx, ty = (np.asarray(a, dtype=np.float64) for a in (n0, s, tx, ty))
    den = np.sqrt((n0 - tx) * (n0 - ty))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, s / np.where(den > 0, den, 1.0), np.nan)
