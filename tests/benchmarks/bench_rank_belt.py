"""CPU cost of the Neyman belts of ``analyze.stats.rank_intervals`` in one process.

Prints, in CPU seconds of this process (``time.process_time``):
- every belt a report can meet (Spearman and Kendall, n = 4 … 50), computed cold: what a fresh process pays at worst;
- the same intervals and p-values asked for again: the memoised cost (``belt_region``, ``null_magnitudes``);
- ``analyze.stats.suite.report_frames`` on a small unbalanced ledger (``--runs`` runs drawn from a 60-configuration
  grid, so its groups have many different sizes), with the belt caches cleared first (cold) and then again (warm).

Run by hand: ``python tests/benchmarks/bench_rank_belt.py`` (``--quick``: n = 4 … 12 and a 24-run ledger).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from analyze.stats import rank_intervals as ri  # noqa: E402
from analyze.stats.suite import report_frames  # noqa: E402
from tests.analyze.synthetic import synthetic_ledger  # noqa: E402

AXES = {"hp.optimizer": ["sgd", "adam"], "hp.batch_size": [64, 256, 512], "hp.lr": [0.01, 0.02, 0.05, 0.1, 0.2],
        "hp.dropout": [0.0, 0.25]}


def clear() -> None:
    for cached in (ri.belt_region, ri.null_magnitudes, ri._belt_recent):
        cached.cache_clear()


def every_belt(sizes: range) -> float:
    start = time.process_time()
    for n in sizes:
        for kind in ri.KINDS:
            ri.rank_interval(0.5, n, 0.95, kind)
            ri.rank_pvalue(0.5, n, kind)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="n = 4 … 12 and a 24-run ledger")
    parser.add_argument("--runs", type=int, default=40, help="runs of the report ledger (default 40)")
    args = parser.parse_args()
    sizes = range(4, 13) if args.quick else range(4, ri.BELT_MAX_N + 1)
    runs = 24 if args.quick else args.runs
    clear()
    print(f"every belt, n = {sizes.start} … {sizes.stop - 1}: cold {every_belt(sizes):.2f} s CPU, "
          f"again {every_belt(sizes):.3f} s CPU")
    ledger = synthetic_ledger(axes=AXES, n_seeds=2, seed=5, n_noise=8).sample(n=runs, seed=1)
    report_frames(ledger.head(12), resamples=10)  # imports and first-call overheads outside the timing
    clear()
    for label in ("cold", "warm"):
        start = time.process_time()
        report_frames(ledger, resamples=1000)
        print(f"report_frames on {runs} runs, belt caches {label}: {time.process_time() - start:.2f} s CPU "
              f"({ri.belt_region.cache_info().currsize} regions held)")


if __name__ == "__main__":
    main()
