"""Chunked resampling: the same resamples and the same coefficients whatever the chunk size, and the block
discordant-pair counter against brute-force enumeration of the pairs."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.stats.bootstrap import METHODS, _BlockDiscordance, correlation_replicates, resample_counts


def _one_draw(seed: int, n: int, b: int) -> np.ndarray:
    """The multiplicities of scipy's draw, rng.integers(0, n, (B, n)), counted the obvious way."""
    idx = np.random.default_rng(seed).integers(0, n, (b, n))
    return np.stack([np.bincount(row, minlength=n) for row in idx])


@pytest.mark.parametrize(("n", "b", "chunk"), [(7, 10, 3), (40, 25, 1), (300, 13, 100), (70_001, 3, 2)])
def test_chunked_draw_is_the_one_draw(n: int, b: int, chunk: int) -> None:
    got = resample_counts(np.random.default_rng(5), n, b, chunk=chunk)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, _one_draw(5, n, b))


def _data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, n).astype(float)  # heavy ties
    y = x + rng.integers(0, 4, n)
    z = rng.normal(size=n)  # no ties
    return np.column_stack([x, y, z, np.round(z, 1)])


@pytest.mark.parametrize("method", METHODS)
def test_result_does_not_depend_on_the_chunk(method: str) -> None:
    data = _data(90, 1)
    pairs = np.array([[0, 1], [2, 1], [3, 1], [2, 3], [1, 1]])
    counts = resample_counts(np.random.default_rng(2), 90, 57)
    whole = correlation_replicates(data, pairs, method, counts, chunk=57).boot
    for chunk in (1, 10, 1000):
        part = correlation_replicates(data, pairs, method, counts, chunk=chunk).boot
        if method == "pearson":  # weighted float moments: a matrix product per chunk rounds alike to 1e-15
            np.testing.assert_allclose(part, whole, rtol=0, atol=1e-13)
        else:  # integer / quarter-integer sums, exact in floating point: bit-identical
            np.testing.assert_array_equal(part, whole)


@pytest.mark.parametrize("n", [1, 2, 5, 63, 64, 65, 200])
def test_block_discordance_equals_pair_enumeration(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.integers(0, max(2, n // 3), n).astype(float)  # ties in x, in y and in both
    y = rng.integers(0, max(2, n // 4), n).astype(float)
    w = rng.integers(0, 4, (n, 6))  # zeros (runs not drawn) and repeats
    # D[b] = Σ over ordered pairs of distinct runs with x_i < x_j and y_i > y_j of w_i w_j
    disc = (x[:, None] < x[None, :]) & (y[:, None] > y[None, :])
    expected = np.einsum("ib,ij,jb->b", w, disc.astype(np.int64), w)
    got = _BlockDiscordance(x, y).discordant(w.astype(np.float32))
    np.testing.assert_array_equal(got, expected)
