"""Work the statistics share between measures gives the answers of computing each measure alone, and the sorted
counting under CMI and sign-error equals enumeration on small ledgers.

The report's statistics keep what does not depend on a measure's values (the target's within-level ranks in the
flags, the cells of granulated Ψ, the environments and Hoeffding weights of sign-error) per set of complete runs.
Measures with different missing runs must therefore give exactly the rows they give when analysed one at a time.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest

from analyze.stats import flag_evidence, granulated_kendall, sign_error_tables
from analyze.stats.cmi import conditional_mutual_information, less_counts


def test_less_counts_equal_enumeration() -> None:
    rng = np.random.default_rng(3)
    n = 60
    for v in (rng.normal(size=n), rng.integers(0, 6, n).astype(float), rng.integers(0, 6, n)):  # with and without ties
        w = rng.integers(0, 3, (4, n)).astype(np.int32)
        brute = np.array([[sum(int(w[r, b]) for b in range(n) if v[b] < v[a]) for a in range(n)] for r in range(4)])
        got = less_counts(v, w)
        assert got.dtype == np.int64 and np.array_equal(got, brute)
    assert less_counts(np.zeros(0), np.zeros((2, 0), dtype=np.int32)).shape == (2, 0)


def _ledger(seed: int = 0, n_seeds: int = 3) -> pl.DataFrame:
    """3 × 2 × 2 configurations, ``n_seeds`` runs each; measure.a complete, measure.b and measure.c with different
    missing runs (NaN, null), gap in [0, 1] with test sets of 2,000 points."""
    rng = np.random.default_rng(seed)
    configs = list(itertools.product([0.01, 0.1, 1.0], [32, 256], ["sgd", "adam"]))
    rows = [(lr, bs, opt) for lr, bs, opt in configs for _ in range(n_seeds)]
    n = len(rows)
    gap = np.clip(0.1 + 0.1 * np.array([math.log10(r[0]) for r in rows]) + rng.normal(0, 0.05, n) + 0.3, 0, 1)
    a = gap + rng.normal(0, 0.05, n)
    b = np.where(rng.random(n) < 0.15, np.nan, -gap + rng.normal(0, 0.1, n))
    c = [None if rng.random() < 0.1 else float(v) for v in rng.normal(size=n)]
    return pl.DataFrame({
        "run_id": [f"r{i}" for i in range(n)], "status": ["FINISHED"] * n,
        "hp.lr": [r[0] for r in rows], "hp.batch_size": [r[1] for r in rows], "hp.optimizer": [r[2] for r in rows],
        "hp.n_test": [2000] * n, "gen.gap_acc": gap, "measure.a": a, "measure.b": b, "measure.c": c,
    })


MEASURES = ("measure.a", "measure.b", "measure.c")


def test_sign_error_joint_equals_one_measure_at_a_time() -> None:
    ledger = _ledger()
    summary, envs = sign_error_tables(ledger, min_ess=2)
    for m in MEASURES:
        alone, alone_envs = sign_error_tables(ledger, measures=[m], min_ess=2)
        assert summary.filter(pl.col("measure") == m).equals(alone, null_equal=True)
        assert envs.filter(pl.col("measure") == m).equals(alone_envs)


def _brute_sign_error(ledger: pl.DataFrame, measure: str, axis: str, min_ess: float) -> list[float]:
    """Every pair of runs whose configurations differ in ``axis`` only, enumerated; Hoeffding weights
    (max(0, 1 − 2 exp(−n Δ²/2))² − ½)₊; per environment the weighted error, kept when (Σw)²/Σw² ≥ min_ess."""
    hp = [c for c in ledger.columns if c.startswith("hp.") and c != "hp.n_test"]
    rows = ledger.to_dicts()
    envs: dict[tuple, list[tuple[float, float]]] = {}
    for r1, r2 in itertools.combinations(rows, 2):
        x1, x2, g1, g2 = r1[measure], r2[measure], r1["gen.gap_acc"], r2["gen.gap_acc"]
        if any(v is None or not math.isfinite(v) for v in (x1, x2, g1, g2)):
            continue
        if r1[axis] == r2[axis] or any(r1[c] != r2[c] for c in hp if c != axis):
            continue
        n = min(r1["hp.n_test"], r2["hp.n_test"])
        prob = max(0.0, 1.0 - 2.0 * math.exp(-n * (g1 - g2) ** 2 / 2.0))
        w = max(prob**2 - 0.5, 0.0)
        err = (1.0 - np.sign(x1 - x2) * np.sign(g1 - g2)) / 2.0
        key = tuple(sorted([tuple(r1[c] for c in hp), tuple(r2[c] for c in hp)], key=str))
        envs.setdefault(key, []).append((w, err))
    out = []
    for pairs in envs.values():
        sw, sw2 = sum(w for w, _ in pairs), sum(w * w for w, _ in pairs)
        if sw > 0 and sw * sw / sw2 >= min_ess - 1e-9:
            out.append(sum(w * e for w, e in pairs) / sw)
    return sorted(out)


@pytest.mark.parametrize("measure", MEASURES)
def test_sign_error_equals_enumeration(measure: str) -> None:
    ledger = _ledger(seed=1)
    summary, envs = sign_error_tables(ledger, min_ess=2)
    for axis in ("hp.lr", "hp.batch_size", "hp.optimizer"):
        want = _brute_sign_error(ledger, measure, axis, 2)
        got = envs.filter((pl.col("measure") == measure) & (pl.col("axis") == axis))["error"].sort().to_list()
        # tolerance: the same sums taken in another order differ by a few ulps
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15)
        row = summary.filter((pl.col("measure") == measure) & (pl.col("axis") == axis)).row(0, named=True)
        assert row["n_envs_kept"] == len(want)
        if want:
            assert row["mean"] == pytest.approx(np.mean(want), rel=1e-12)
            assert row["p90"] == pytest.approx(np.percentile(want, 90), rel=1e-12)
            assert row["max"] == pytest.approx(max(want), rel=1e-12)


def test_granulated_joint_equals_one_measure_at_a_time() -> None:
    ledger = _ledger(seed=2)
    joint = granulated_kendall(ledger, min_cells=1)
    for m in MEASURES:
        assert joint.filter(pl.col("measure") == m).equals(granulated_kendall(ledger, measures=[m], min_cells=1),
                                                           null_equal=True)


def test_flag_evidence_joint_equals_one_measure_at_a_time() -> None:
    # > 200 runs per level: the Fisher-z difference test, which draws no permutations, so each measure's records do
    # not depend on which measures came before it
    ledger = _ledger(seed=3, n_seeds=70)
    joint = flag_evidence(ledger, min_group=8)
    for m in MEASURES:
        mine = [r for r in joint if r.get("measure") == m]
        alone = flag_evidence(ledger, measures=[m], min_group=8)
        assert len(mine) == len(alone) and mine
        for r1, r2 in zip(mine, alone):
            assert r1.keys() == r2.keys()
            for k in r1:
                same = r1[k] == r2[k] or (isinstance(r1[k], float) and np.isnan(r1[k]) and np.isnan(r2[k]))
                assert same, (m, k, r1[k], r2[k])


def test_cmi_joint_equals_one_measure_at_a_time() -> None:
    ledger = _ledger(seed=4, n_seeds=6)
    joint = conditional_mutual_information(ledger)
    for m in MEASURES:
        assert joint.filter(pl.col("measure") == m).equals(conditional_mutual_information(ledger, measures=[m]),
                                                           null_equal=True)


def test_partial_matrix_coefficients_do_not_depend_on_blas_threads() -> None:
    # coefficient_matrices runs its correlation products on one BLAS thread; the matrices must be those numpy
    # gives with the library's default threads (exact equality)
    from analyze.stats.partial import coefficient_matrices

    rng = np.random.default_rng(5)
    for n, d in ((2000, 31), (400, 40), (50, 3)):
        data = rng.normal(size=(n, d)) * rng.lognormal(size=d)
        mats = coefficient_matrices(data)
        assert np.array_equal(mats["pearson"], np.corrcoef(data, rowvar=False))
        ranks = np.column_stack([np.argsort(np.argsort(data[:, j])) + 1.0 for j in range(d)])  # no ties: ranks
        assert np.array_equal(mats["spearman"], np.corrcoef(ranks, rowvar=False))
