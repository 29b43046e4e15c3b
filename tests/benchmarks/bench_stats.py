"""Benchmark of the statistics on a synthetic ledger of 10,000 runs × 30 measures × 6 hyperparameter axes.

Run by hand: ``python tests/benchmarks/bench_stats.py`` (``--quick`` for a 2,000-run smoke run). Targets:
every statistic except the bootstrap and CMI under 15 s in all, CMI under 60 s, the bootstrap with 1,000 resamples
under 2 minutes. Also prints, measured side by side in this run, the speed-up of the sorted/vectorised code over the
straightforward alternative (scipy.stats.kendalltau per resample; enumerating pairs for CMI).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from analyze.stats import (  # noqa: E402
    break_flags,
    conditional_mutual_information,
    correlations,
    expected_sign,
    granulated_kendall,
    partial_correlations,
    partial_matrix,
    rank_measures,
    sign_error,
)
from analyze.stats.bootstrap import correlation_replicates, resample_counts  # noqa: E402
from analyze.stats.cmi import pair_tables  # noqa: E402
from tests.analyze.synthetic import benchmark_ledger  # noqa: E402


CPU: dict[str, float] = {}


def timed(label: str, fn, results: dict[str, float]) -> object:
    """Wall-clock seconds (judged against the targets) and this process's CPU seconds (what the code costs on an
    uncontended core; the machine is shared, so wall time includes waiting for a core)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    results[label] = time.perf_counter() - start
    CPU[label] = time.process_time() - cpu
    print(f"  {label:<48s} {results[label]:8.2f} s wall  {CPU[label]:8.2f} s CPU", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 runs and 100 resamples (smoke test)")
    args = parser.parse_args()
    n_runs, resamples = (2_000, 100) if args.quick else (10_000, 1_000)
    ledger = benchmark_ledger(n_runs=n_runs, n_measures=30)
    print(f"ledger: {ledger.height} runs, 30 measures, 6 hp axes; {resamples} bootstrap resamples; "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    t: dict[str, float] = {}
    start = time.perf_counter()
    expected_sign("measure.planted", "gen.gap_acc")  # imports the measure registry (torch) once
    print(f"one-time import of the measure registry for expected directions: {time.perf_counter() - start:.2f} s")
    print("statistics without bootstrap and CMI (target < 15 s in all):")
    timed("correlations, 30 measures x 4 targets", lambda: correlations(ledger), t)
    timed("rank (target gen.gap_acc)", lambda: rank_measures(ledger, target="gen.gap_acc"), t)
    timed("partial, covariate gen.train_loss, 4 targets", lambda: partial_correlations(ledger, covariates=["gen.train_loss"]), t)
    timed("partial matrix, 30 x 29 controls", lambda: partial_matrix(ledger, target="gen.gap_acc"), t)
    timed("granulated Kendall", lambda: granulated_kendall(ledger), t)
    timed("sign-error (Hoeffding, n_test 10,000)", lambda: sign_error(ledger), t)
    timed("break flags", lambda: break_flags(ledger), t)
    fast_total = sum(t.values())
    print(f"  {'TOTAL':<48s} {fast_total:8.2f} s wall  {sum(CPU.values()):8.2f} s CPU  "
          f"({'PASS' if fast_total < 15 else 'FAIL'} < 15 s wall)")

    print("conditional mutual information (target < 60 s):")
    timed("CMI, 30 measures x 15 axis pairs", lambda: conditional_mutual_information(ledger), t)
    print(f"  {'':<48s} {'PASS' if t['CMI, 30 measures x 15 axis pairs'] < 60 else 'FAIL'} < 60 s")

    print(f"bootstrap BCa, {resamples} resamples, Pearson + Spearman + Kendall (target < 120 s):")
    timed("rank with CIs, 30 measures x 1 target", lambda: rank_measures(ledger, target="gen.gap_acc", resamples=resamples), t)
    print(f"  {'':<48s} {'PASS' if t['rank with CIs, 30 measures x 1 target'] < 120 else 'FAIL'} < 120 s")
    if not args.quick:
        timed("correlations with CIs, 30 measures x 4 targets", lambda: correlations(ledger, resamples=resamples), t)

    print("side by side (same workload, this run):")
    _kendall_side_by_side(ledger)
    _cmi_side_by_side(ledger)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


def _kendall_side_by_side(ledger) -> None:
    from scipy import stats

    x = ledger["measure.planted"].to_numpy()
    y = ledger["gen.gap_acc"].to_numpy()
    b = 50
    counts = resample_counts(np.random.default_rng(0), x.size, b)
    start = time.perf_counter()
    correlation_replicates(np.column_stack([x, y]), np.array([[0, 1]]), "kendall", counts, jackknife=False)
    ours = time.perf_counter() - start
    idx = np.random.default_rng(0).integers(0, x.size, (b, x.size))
    start = time.perf_counter()
    for i in idx:
        stats.kendalltau(x[i], y[i])
    theirs = time.perf_counter() - start
    print(f"  Kendall tau on {b} resamples: weighted merge counts {ours:.2f} s vs scipy.kendalltau loop {theirs:.2f} s"
          f" -> {theirs / ours:.1f}x")


def _cmi_side_by_side(ledger) -> None:
    n = 1_500
    sub = ledger.head(n)
    mu = sub["measure.planted"].to_numpy()
    g = sub["gen.gap_acc"].to_numpy()
    codes = [sub["hp.a"].to_numpy() * 5 + sub["hp.b"].to_numpy()]
    start = time.perf_counter()
    pair_tables(mu, g, codes)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    dm = np.sign(mu[:, None] - mu[None, :])  # every ordered pair, as an enumeration would
    dg = np.sign(g[:, None] - g[None, :])
    k = codes[0]
    table = np.zeros((25, 25, 3, 2))
    keep = dg != 0
    np.add.at(table, (k[:, None].repeat(n, 1)[keep], k[None, :].repeat(n, 0)[keep], (1 - dm)[keep].astype(int),
                      (dg[keep] < 0).astype(int)), 1)
    theirs = time.perf_counter() - start
    print(f"  CMI pair table, {n} runs: sorted counting {ours:.3f} s vs enumerating all {n * n:,} pairs (numpy) "
          f"{theirs:.3f} s -> {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
