"""The Neyman belt of ``rank_intervals`` is computed once per (kind, n) and gives bit-identical results to the
straightforward computation (ranks by a double argsort, the x side recomputed for every θ; Kendall's τ checked
against scipy.stats.kendalltau on a few draws).

Tolerance: none (``np.array_equal`` and ``==``): the memoised and reorganised code must change no bit of any
interval or p-value.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analyze.stats import rank_intervals as ri


def _reference_coefficients(kind: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if kind == "spearman":
        rx = np.argsort(np.argsort(x, axis=1), axis=1).astype(np.float64)
        ry = np.argsort(np.argsort(y, axis=1), axis=1).astype(np.float64)
        rx -= rx.mean(axis=1, keepdims=True)
        ry -= ry.mean(axis=1, keepdims=True)
        return (rx * ry).sum(axis=1) / np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    n = x.shape[1]
    ys = np.take_along_axis(y, np.argsort(x, axis=1), axis=1)
    discordant = np.zeros(x.shape[0])
    for j in range(1, n):
        discordant += (ys[:, :j] > ys[:, j : j + 1]).sum(axis=1)
    return 1.0 - 4.0 * discordant / (n * (n - 1))


def _reference_belt(kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    half = 1.0 - (1.0 - np.linspace(0.0, 1.0, ri.BELT_HALF)) ** 2
    theta = np.concatenate([-half[:0:-1], half])
    r = 2 * np.sin(np.pi * half / 6) if kind == "spearman" else np.sin(np.pi * half / 2)
    rng = np.random.default_rng([ri.BELT_SEED, n, ri.KINDS.index(kind)])
    x, z = rng.standard_normal((ri.BELT_DRAWS, n)), rng.standard_normal((ri.BELT_DRAWS, n))
    out = np.empty((half.size, ri.BELT_DRAWS))
    for i, rr in enumerate(r):
        out[i] = np.sort(_reference_coefficients(kind, x, rr * x + np.sqrt(max(0.0, 1.0 - rr * rr)) * z))
    return theta, np.concatenate([-out[:0:-1, ::-1], out])


def _reference_interval_and_p(kind: str, n: int, r: float, confidence: float) -> tuple[float, float, float]:
    theta, draws = _reference_belt(kind, n)
    k = int(np.floor((1.0 - confidence) / 2.0 * ri.BELT_DRAWS))
    lo = np.maximum.accumulate(draws[:, k])
    hi = np.maximum.accumulate(draws[:, ri.BELT_DRAWS - 1 - k])
    extreme = int((np.abs(draws[ri.BELT_HALF - 1]) >= abs(r) - 1e-12).sum())
    p = (1 + extreme) / (1 + ri.BELT_DRAWS) if extreme else None
    return ri._invert_lower(r, theta, hi), ri._invert_upper(r, theta, lo), p


@pytest.mark.parametrize("kind", ri.KINDS)
@pytest.mark.parametrize("n", [5, 9, 23])
def test_belt_is_bit_identical_to_the_straightforward_computation(kind: str, n: int) -> None:
    theta, draws = ri.belt(kind, n)
    ref_theta, ref_draws = _reference_belt(kind, n)
    assert np.array_equal(theta, ref_theta) and np.array_equal(draws, ref_draws)
    for r in (-1.0, -0.61, 0.0, 0.2, 0.83, 1.0):
        for confidence in (0.9, 0.95):
            lo, hi, p = _reference_interval_and_p(kind, n, r, confidence)
            assert ri.rank_interval(r, n, confidence, kind) == (lo, hi)
            if p is not None:  # beyond every draw the p-value is the asymptotic tail (test_rank_intervals)
                assert ri.rank_pvalue(r, n, kind) == p


def test_reference_kendall_equals_scipy() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((5, 11)), rng.standard_normal((5, 11))
    expected = [stats.kendalltau(a, b).statistic for a, b in zip(x, y)]
    assert _reference_coefficients("kendall", x, y) == pytest.approx(expected, abs=1e-12)


def test_each_kind_and_n_is_computed_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    real = ri.belt

    def counting(kind: str, n: int):
        calls.append((kind, n))
        return real(kind, n)

    for cached in (ri.belt_region, ri.null_magnitudes, ri._belt_recent):
        cached.cache_clear()
    monkeypatch.setattr(ri, "belt", counting)
    sizes = range(5, ri.BELT_MAX_N + 1, 2)  # 46 (kind, n): more than a 32-entry LRU cache of whole belts would hold
    for _ in range(2):  # the second round meets every (kind, n) again, interleaved: more keys than any small LRU holds
        for n in sizes:
            for kind in ri.KINDS:
                ri.rank_interval(0.4, n, 0.95, kind)
                ri.rank_pvalue(0.4, n, kind)
    assert sorted(calls) == sorted((k, n) for n in sizes for k in ri.KINDS)  # once each, never again
    theta, lo, hi = ri.belt_region("spearman", 8, 0.95)
    assert ri.belt_region("spearman", 8, 0.95)[1] is lo and not lo.flags.writeable  # shared, so read-only
