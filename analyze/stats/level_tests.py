"""Does the measure–target rank relation differ between two levels of an intervention (or two sets of levels)?

Within every level ℓ (n_ℓ runs) both variables are replaced by centred ranks c = (rank − (n_ℓ + 1)/2)/n_ℓ (average
ranks for ties), so differences between the levels' means never enter. The *stratified* coefficient of a set S of
levels is

    r(S) = Σ_S c_x c_y / √(Σ_S c_x² · Σ_S c_y²),

which is Spearman's ρ for one level, and close to the n-weighted mean of the levels' ρ for several. Two sides g and
"rest" (the flags compare two levels) are compared by two statistics, T = r(g) − r(rest) (any change, used for
reversals) and T_| | = |r(g)| − |r(rest)| (a change of strength, used for weakenings: a noise level whose ρ happens to
have the other sign is not "weaker" by the signed difference):

- when either side has at most ``PERMUTATION_MAX_N`` = 200 runs: a permutation test. Under "the same relation in
  every level" the centred-rank pairs (c_x, c_y) of the runs are exchangeable between levels, so the pairs of g and
  of the rest are pooled and re-split at random (sizes kept) ``PERMUTATIONS`` times: p = (1 + #{|T*| ≥ |T|})/(1 +
  permutations) for each statistic; while fewer than ``RESOLVED`` draws are as extreme (a small p, which a large
  Benjamini–Hochberg family needs resolved), ten times more are drawn, up to ``MAX_PERMUTATIONS``. It holds its
  level at |ρ| = 1, near |ρ| = 1 and with 8 runs per level, where Fisher's z does not.
- otherwise Fisher's z: Z = (artanh r_g − artanh r_rest)/√(v/(n_g − 3) + v/(n_rest − k_rest − 2)) (and
  |artanh r_g| − |artanh r_rest| for the strength) with Bonett & Wright's (2000) v = 1 + r̄²/2 at the mean r̄ of the
  two coefficients (the Fieller–Hartley–Pearson 1.06 understates the variance of a Spearman ρ near ±1: levels with
  ρ 0.99 and 0.997 in 60 runs each would differ falsely) and |r| capped at ``rank_intervals.max_below_one`` (k_rest
  levels in the rest: each costs one degree of freedom).

The stratified coefficient's own interval and p-value are those of ``rank_intervals`` at the effective size
n − (k − 1) for k levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import stats

from analyze.stats.rank_intervals import FISHER, max_below_one, rank_interval, rank_pvalue
from analyze.stats.tails import normal_sf

PERMUTATION_MAX_N = 200  # a side this small or smaller: the permutation test
PERMUTATIONS = 1999
MAX_PERMUTATIONS = 19_999
RESOLVED = 10  # draws at least as extreme as observed before a p-value counts as resolved
PERMUTATION_SEED = 7
_CHUNK = 4_000_000  # permutation draws × runs held in memory at once


def centred_ranks(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(average rank within the level − (n_ℓ + 1)/2) / n_ℓ for every run; ``codes`` are level ids ≥ 0.

    One sort by (level, value) ranks every level at once: a run of tied values at 0-based positions s … e − 1
    of its level gets the average rank (s + 1 + e)/2, the value of scipy.stats.rankdata (exact: a half-integer).
    Values with NaN go through scipy.stats.rankdata level by level, which propagates the NaN.
    """
    values, codes = np.asarray(values, dtype=np.float64), np.asarray(codes)
    if values.size == 0:
        return np.zeros(0)
    if not np.isfinite(values).all():
        out = np.zeros(values.size)
        for code in np.unique(codes):
            m = codes == code
            n = int(m.sum())
            out[m] = (stats.rankdata(values[m]) - (n + 1) / 2.0) / n
        return out
    order = np.lexsort((values, codes))
    sc, sv = codes[order], values[order]
    new_level = np.r_[True, sc[1:] != sc[:-1]]
    new_tie = new_level | np.r_[True, sv[1:] != sv[:-1]]
    level_start = np.flatnonzero(new_level)
    level_id = np.cumsum(new_level) - 1
    level_n = np.diff(np.r_[level_start, sv.size])
    tie_start = np.flatnonzero(new_tie)
    tie_id = np.cumsum(new_tie) - 1
    tie_end = np.r_[tie_start[1:], sv.size]  # a tie run never crosses a level boundary
    first = tie_start[tie_id] - level_start[level_id]  # s, 0-based position of the tie run inside its level
    last = tie_end[tie_id] - level_start[level_id]  # e, one past its end
    ranks = (first + 1 + last) / 2.0
    n = level_n[level_id].astype(np.float64)
    out = np.empty(values.size)
    out[order] = (ranks - (n + 1) / 2.0) / n
    return out


def stratified_r(cx: np.ndarray, cy: np.ndarray) -> float:
    """Σ c_x c_y / √(Σ c_x² Σ c_y²); NaN when a variable is constant within every level of the set."""
    den = float(np.sqrt((cx * cx).sum() * (cy * cy).sum()))
    return float(np.clip((cx * cy).sum() / den, -1.0, 1.0)) if den > 0 else float("nan")


@dataclass(frozen=True)
class Side:
    """The runs of one side of a comparison: centred ranks, size and number of levels."""

    cx: np.ndarray
    cy: np.ndarray
    n_levels: int

    @property
    def n(self) -> int:
        return int(self.cx.size)

    @property
    def n_effective(self) -> int:
        return self.n - (self.n_levels - 1)

    @cached_property
    def _r(self) -> float:
        return stratified_r(self.cx, self.cy)

    def r(self) -> float:
        """``stratified_r`` of the side (computed once: intervals, p-values and differences all read it)."""
        return self._r

    def interval(self, confidence: float) -> tuple[float, float]:
        return rank_interval(self.r(), self.n_effective, confidence, "spearman")

    def pvalue(self) -> float:
        return rank_pvalue(self.r(), self.n_effective, "spearman")


def difference_pvalues(g: Side, rest: Side, rng: np.random.Generator,
                       permutations: int = PERMUTATIONS) -> tuple[float, float]:
    """Two-sided p-values of r(g) = r(rest) (signed: a reversal or any change) and of |r(g)| = |r(rest)| (strength:
    a weakening), module docstring; NaN when either coefficient is undefined."""
    r_g, r_r = g.r(), rest.r()
    if not (np.isfinite(r_g) and np.isfinite(r_r)):
        return float("nan"), float("nan")
    if g.n > PERMUTATION_MAX_N and rest.n > PERMUTATION_MAX_N:
        offset = FISHER["spearman"][1]
        cap_g, cap_r = max_below_one(g.n), max_below_one(rest.n_effective)
        z_g, z_r = np.arctanh(np.clip(r_g, -cap_g, cap_g)), np.arctanh(np.clip(r_r, -cap_r, cap_r))
        variance = 1.0 + ((r_g + r_r) / 2.0) ** 2 / 2.0  # Bonett & Wright (2000), at the common ρ of the null
        se = np.sqrt(variance / (g.n - offset) + variance / (rest.n_effective - offset))
        return float(2 * normal_sf(abs(z_g - z_r) / se)), float(2 * normal_sf(abs(abs(z_g) - abs(z_r)) / se))
    return permutation_pvalues(np.concatenate([g.cx, rest.cx]), np.concatenate([g.cy, rest.cy]), g.n, rng, permutations)


def permutation_pvalues(cx: np.ndarray, cy: np.ndarray, n_first: int, rng: np.random.Generator,
                        permutations: int = PERMUTATIONS, max_permutations: int = MAX_PERMUTATIONS) -> tuple[float, float]:
    """p of |r(first n_first) − r(others)| and of ||r(first)| − |r(others)|| under random re-splits of the pooled
    centred-rank pairs (the same draws for both)."""
    xy, xx, yy = cx * cy, cx * cx, cy * cy
    tot = np.array([xy.sum(), xx.sum(), yy.sum()])

    def coefficients(sums_first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rest = tot[:, None] - sums_first
        with np.errstate(invalid="ignore", divide="ignore"):
            a = sums_first[0] / np.sqrt(sums_first[1] * sums_first[2])
            b = rest[0] / np.sqrt(rest[1] * rest[2])
        return np.nan_to_num(a, nan=0.0), np.nan_to_num(b, nan=0.0)

    a0, b0 = coefficients(np.array([[xy[:n_first].sum()], [xx[:n_first].sum()], [yy[:n_first].sum()]]))
    signed, strength = abs(float(a0[0] - b0[0])), abs(abs(float(a0[0])) - abs(float(b0[0])))
    n = cx.size
    chunk = max(1, _CHUNK // n)
    extreme = np.zeros(2, dtype=np.int64)
    done, target = 0, permutations
    while done < target:
        b = min(chunk, target - done)
        idx = rng.permuted(np.tile(np.arange(n), (b, 1)), axis=1)[:, :n_first]
        a, c = coefficients(np.stack([xy[idx].sum(axis=1), xx[idx].sum(axis=1), yy[idx].sum(axis=1)]))
        extreme[0] += int((np.abs(a - c) >= signed - 1e-12).sum())
        extreme[1] += int((np.abs(np.abs(a) - np.abs(c)) >= strength - 1e-12).sum())
        done += b
        if done == target and extreme.min() < RESOLVED and target < max_permutations:
            target = min(max_permutations, 10 * (target + 1) - 1)  # a small p: draw more to resolve it
    p = (1 + extreme) / (1 + done)
    return float(p[0]), float(p[1])
