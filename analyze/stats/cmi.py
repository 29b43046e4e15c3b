"""Conditional mutual information between the measure's and the gap's ordering of pairs of runs
(Jiang et al. 2020, "Fantastic Generalization Measures", §6; the PGDL competition's scoring).

For every ordered pair of runs (a, b): V_μ = sign(μ_a − μ_b) and V_g = sign(g_a − g_b). For a conditioning set S
of interventions (one ``hp.*`` column each, or a group of columns the spec moves together: its joint level is one
value, see ``analyze.stats.interventions``), U_S is the pair of values (S-values of a, S-values of b), so a slice
holds the pairs whose two runs have given values on S. The score of S is I(V_μ; V_g | U_S) / H(V_g | U_S) (bits / bits; both conditional
quantities are expectations over the slices weighted by their share of pairs), and the measure's score is the
minimum over every S of ``set_size`` interventions (every pair by default; fewer when the ledger has fewer).
1 means the measure orders runs exactly like the gap in every slice; 0 means it carries no information.

Pairs tied in the gap have no V_g and are left out; pairs tied in the measure keep V_μ = 0, a third value, so a
measure that cannot tell runs apart scores low.

Small samples: the plug-in I over a slice of N pairs is biased upward by about (3 − 1)(2 − 1)/(2 N ln 2) bits
(Miller–Madow), and H(V_g | U) ≤ 1, so a score means something only with enough pairs per slice: a conditioning set
whose slices hold fewer than ``MIN_PAIRS_PER_SLICE`` = 20 ordered pairs on average (bias ≥ 0.036 bits) is not scored,
and when no set is left the row is null with a note giving the number of runs and pairs per slice (8 runs over two
two-level axes give 3.5 pairs per slice: a CMI of 0.66 from them is bias, not information). Pair tables are counted
by sorting (``_pairs.PrefixCounter`` with
one weight row per slice group), never by enumerating the n² pairs.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import polars as pl

from analyze.columns import DEFAULT_TARGET
from analyze.stats._data import StatsError, as_float, finished_runs, group_codes, pick_measures, pick_targets
from analyze.stats.interventions import interventions
from analyze.stats._pairs import PrefixCounter, dense_rank

SCHEMA: dict[str, pl.DataType] = {
    "measure": pl.Utf8,
    "target": pl.Utf8,
    "cmi": pl.Float64,
    "conditioning": pl.Utf8,
    "cmi_max": pl.Float64,
    "n_sets": pl.Int64,
    "n_runs": pl.Int64,
    "n_pairs": pl.Int64,
    "note": pl.Utf8,
}
MIN_PAIRS_PER_SLICE = 20
_MAX_ROWS = 4096  # weight rows (slice groups) processed together: bounds memory to _MAX_ROWS × n × 8 bytes


def pair_tables(mu: np.ndarray, g: np.ndarray, groups: list[np.ndarray]) -> list[np.ndarray]:
    """For each grouping of the runs, the (G, G, 3, 2) counts of ordered pairs (a in group u, b in group v, a ≠ b)
    by V_μ ∈ (+, 0, −) and V_g ∈ (+, −); pairs tied in g are not counted.

    One sorted pass counts N(+,+) = #{μ_b < μ_a, g_b < g_a}; N(+,−) follows from #{μ_b < μ_a} (``less_counts``: one
    cumulative sum per group in μ order) minus N(+,+) and the pairs tied in g; pairs tied in μ or in g are few for
    real measures and are enumerated within their tie groups (a second sorted pass replaces the enumeration when
    ties are many).
    """
    rm, rg = dense_rank(mu), dense_rank(g)
    strict = np.lexsort((-rg, rm))  # μ ascending, tied μ by g descending: counts μ_b < μ_a only
    pp_counter = PrefixCounter(rg[strict])
    sizes = [int(k.max()) + 1 if k.size else 0 for k in groups]
    g_ties, mu_ties = _tied_pairs(rg), _tied_pairs(rm)
    loose = np.lexsort((rg, rm))
    pm_counter = PrefixCounter(rg[loose], greater=True) if g_ties is None else None
    le_counter = PrefixCounter(rg[loose]) if mu_ties is None else None
    out: list[np.ndarray] = []
    batch: list[int] = []

    def flush() -> None:
        onehots = [_onehot(groups[i], sizes[i]) for i in batch]
        w = np.concatenate(onehots)
        pp = _unsort(pp_counter.weighted(w[:, strict]), strict)  # [row, a] = #{b in row: μ_b<μ_a, g_b<g_a}
        pm = _unsort(pm_counter.weighted(w[:, loose]), loose) if pm_counter else None  # #{b: μ_b<μ_a, g_b>g_a}
        le = _unsort(le_counter.weighted(w[:, loose]), loose) if le_counter else None  # #{b: μ_b≤μ_a, g_b<g_a}
        lt = less_counts(rm, w) if pm is None else None  # #{b: μ_b<μ_a}
        start = 0
        for i, oh in zip(batch, onehots):
            rows = slice(start, start + oh.shape[0])
            start += oh.shape[0]
            k, size = groups[i], sizes[i]
            n_pp = _sum_by_group(pp[rows], k)  # [u, v] = Σ_{a in u} count over b in v
            if pm is not None:
                n_pm = _sum_by_group(pm[rows], k)
            else:  # #{μ_b < μ_a} − N(+,+) − #{μ_b < μ_a, g_b = g_a}
                n_pm = _sum_by_group(lt[rows], k) - n_pp - _tie_table(g_ties, mu, k, size, by_sign=1)
            if le is not None:
                n_0p = _sum_by_group(le[rows], k) - n_pp
            else:  # #{μ_b = μ_a, g_b < g_a}
                n_0p = _tie_table(mu_ties, g, k, size, by_sign=1)
            t = np.zeros((size, size, 3, 2))
            t[:, :, 0, 0], t[:, :, 0, 1] = n_pp, n_pm
            t[:, :, 2, 0], t[:, :, 2, 1] = n_pm.T, n_pp.T  # (μ_a<μ_b, g_a>g_b) is (b, a) seen the other way
            t[:, :, 1, 0], t[:, :, 1, 1] = n_0p, n_0p.T
            out.append(t)
        batch.clear()

    rows_in_batch = 0
    for i, size in enumerate(sizes):
        if batch and rows_in_batch + size > _MAX_ROWS:
            flush()
            rows_in_batch = 0
        batch.append(i)
        rows_in_batch += size
    if batch:
        flush()
    return out


_MAX_TIED_PAIRS = 2_000_000


def _tied_pairs(ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """All ordered pairs (a, b), a ≠ b, with equal rank; None when there are too many to list."""
    order, counts = np.argsort(ranks, kind="stable"), np.bincount(ranks)
    if int((counts * (counts - 1)).sum()) > _MAX_TIED_PAIRS:
        return None
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    aa, bb = [], []
    for m in np.unique(counts[counts >= 2]):
        a, b = np.nonzero(~np.eye(m, dtype=bool))
        base = starts[counts == m][:, None]
        aa.append(order[base + a[None, :]].ravel())
        bb.append(order[base + b[None, :]].ravel())
    if not aa:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(aa), np.concatenate(bb)


def _tie_table(pairs: tuple[np.ndarray, np.ndarray], other: np.ndarray, k: np.ndarray, size: int, by_sign: int) -> np.ndarray:
    """[u, v] = #{tied pairs (a, b), a in u, b in v, with sign(other_a − other_b) == by_sign}."""
    a, b = pairs
    keep = np.sign(other[a] - other[b]) == by_sign
    return np.bincount(k[a[keep]] * size + k[b[keep]], minlength=size * size).reshape(size, size).astype(np.int64)


def less_counts(v: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``out[r, a] = Σ_b weights[r, b]·[v_b < v_a]`` for integer weight rows (R, n), exact in int64.

    One stable sort of v and one cumulative sum of the sorted weights per row: the sum over the values below v_a is
    the prefix up to the first position of v_a's value in sorted order. O(n log n + R·n).
    """
    v = np.asarray(v)
    weights = np.asarray(weights)
    order = np.argsort(v, kind="stable")
    sv = v[order]
    first = np.searchsorted(sv, sv, side="left")  # #{b : v_b < sv[i]}
    # int32 is exact while every row's total weight stays below 2^31 (checked), and halves the memory
    dtype = np.int32 if np.abs(weights).sum(axis=1, dtype=np.int64).max(initial=0) < 2**31 else np.int64
    cum = np.zeros((weights.shape[0], v.size + 1), dtype=dtype)
    np.cumsum(weights[:, order], axis=1, dtype=dtype, out=cum[:, 1:])
    out = np.empty((weights.shape[0], v.size), dtype=np.int64)
    out[:, order] = cum[:, first]
    return out


def _onehot(codes: np.ndarray, size: int) -> np.ndarray:
    oh = np.zeros((size, codes.size), dtype=np.int32)
    oh[codes, np.arange(codes.size)] = 1
    return oh


def _sum_by_group(counts: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(G, G) with [u, v] = Σ_{a : codes[a] = u} counts[v, a] (integer, exact); every group is non-empty."""
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    return np.add.reduceat(counts[:, order], starts, axis=1).T


def _unsort(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    out[:, order] = values
    return out


def pairs_per_slice(table: np.ndarray) -> float:
    """Mean ordered pairs over the non-empty slices of a (G, G, 3, 2) table (0 when every slice is empty)."""
    counts = table.reshape(-1, 6).sum(axis=1)
    used = counts > 0
    return float(counts[used].mean()) if used.any() else 0.0


def cmi_from_table(table: np.ndarray) -> float:
    """I(V_μ; V_g | U) / H(V_g | U) in bits from (G, G, 3, 2) slice tables; NaN if V_g never varies in a slice."""
    t = table.reshape(-1, 3, 2)
    total = t.sum()
    if total == 0:
        return float("nan")
    slice_n = t.sum(axis=(1, 2))
    used = slice_n > 0
    t, slice_n = t[used], slice_n[used]
    p = t / slice_n[:, None, None]
    pm, pg = p.sum(axis=2, keepdims=True), p.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mi = np.where(p > 0, p * np.log2(p / (pm * pg)), 0.0).sum(axis=(1, 2))
        hg = -np.where(pg > 0, pg * np.log2(pg), 0.0).sum(axis=(1, 2))
    weight = slice_n / total
    den = float((weight * hg).sum())
    return float((weight * mi).sum() / den) if den > 0 else float("nan")


def conditional_mutual_information(
    ledger: pl.DataFrame,
    *,
    target: str = DEFAULT_TARGET,
    measures: Sequence[str] | None = None,
    axes: Sequence[str] | None = None,
    set_size: int = 2,
    min_pairs_per_slice: float = MIN_PAIRS_PER_SLICE,
) -> pl.DataFrame:
    """One row per measure: the minimum CMI over the conditioning sets, which set attains it, and the maximum
    (sets with fewer than ``min_pairs_per_slice`` pairs per non-empty slice are not scored; module docstring)."""
    runs = finished_runs(ledger)
    (target,) = pick_targets(runs, target)
    measure_cols = pick_measures(runs, measures)
    found = interventions(runs, axes)
    if not found:
        raise StatsError("conditional mutual information: no hp.* column takes two or more values among the finished runs")
    size = min(set_size, len(found))
    sets = [tuple(iv.name for iv in s) for s in itertools.combinations(found, size)]
    codes = {tuple(iv.name for iv in s): group_codes(runs, [a for iv in s for a in iv.axes])
             for s in itertools.combinations(found, size)}
    g_all = as_float(runs, [target])[:, 0]
    x = as_float(runs, measure_cols)
    rows: list[dict] = []
    for k, measure in enumerate(measure_cols):
        ok = np.isfinite(x[:, k]) & np.isfinite(g_all)
        row = {"measure": measure, "target": target, "cmi": None, "conditioning": None, "cmi_max": None,
               "n_sets": len(sets), "n_runs": int(ok.sum()), "n_pairs": 0, "note": None}
        if ok.sum() < 2:
            row["note"] = f"fewer than 2 finished runs have both {measure} and {target}"
            rows.append(row)
            continue
        groups = [dense_rank(codes[s][ok]) for s in sets]
        tables = pair_tables(x[ok, k], g_all[ok], groups)
        per_slice = np.array([pairs_per_slice(t) for t in tables])
        scores = np.array([cmi_from_table(t) if d >= min_pairs_per_slice else np.nan for t, d in zip(tables, per_slice)])
        row["n_pairs"] = int(tables[0].sum())
        if np.isfinite(scores).any():
            best = int(np.nanargmin(scores))
            row["cmi"], row["conditioning"], row["cmi_max"] = float(scores[best]), ",".join(sets[best]), float(np.nanmax(scores))
        elif (per_slice < min_pairs_per_slice).all():
            row["note"] = (f"too few runs: {int(ok.sum())} runs give at most {per_slice.max():.1f} ordered pairs per slice "
                           f"of any conditioning set, fewer than {min_pairs_per_slice:g} (the plug-in bias of I is about "
                           f"1/(2 ln 2 · pairs per slice) bits); run more seeds or condition on fewer levels")
        else:
            row["note"] = f"{target} does not vary within any slice; the score is undefined"
        rows.append(row)
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")
