"""CPU cost of ``python -m analyze report`` against ``python -m analyze rank`` on one synthetic ledger.

Target: ``report`` costs at most 1.5× the CPU of ``rank`` on a 10,000-run × 30-measure × 6-axis ledger
(``tests.analyze.synthetic.benchmark_ledger``: 2,000 configurations × 5 seeds), both at their defaults
(1,000 bootstrap resamples; the seeds of each configuration averaged first). Each command runs in its own Python
process and is charged the CPU seconds of that process (user + system, ``resource.RUSAGE_CHILDREN``), imports
included, so the ratio is what a user pays. CPU time, unlike wall time, barely depends on what else runs on the
machine.

Run by hand: ``python tests/benchmarks/bench_report_cost.py`` (full size), ``--runs 1000 --resamples 100`` for a
smoke run; ``--no-seed-means`` times both commands on every run as an independent draw; ``--repeats 3`` runs the
pair three times, alternating, and also prints the median ratio (the CPU seconds of both commands move with what
else runs on the machine, the shared bootstrap's by a second or more).
"""

from __future__ import annotations

import argparse
import os
import statistics
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.analyze.synthetic import benchmark_ledger  # noqa: E402

TARGET_RATIO = 1.5


def child_cpu(argv: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``python -m analyze <argv>`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "analyze", *argv], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"python -m analyze {' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the ledger (default 10,000)")
    parser.add_argument("--measures", type=int, default=30, help="measure columns (default 30)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of both commands (default 1000)")
    parser.add_argument("--no-seed-means", action="store_true", help="pass --no-seed-means to both commands")
    parser.add_argument("--repeats", type=int, default=1, help="time rank and report this many times, alternating (default 1)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Path(tmp) / "bench.csv"
        frame = benchmark_ledger(n_runs=args.runs, n_measures=args.measures)
        frame.write_csv(ledger)
        common = ["--ledger", str(ledger), "--resamples", str(args.resamples)]
        common += ["--no-seed-means"] if args.no_seed_means else []
        print(f"ledger: {frame.height} runs x {args.measures} measures x 6 hp axes; {args.resamples} resamples; "
              f"{'every run a draw' if args.no_seed_means else 'seeds averaged per configuration'}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
        ratios = []
        for _ in range(args.repeats):
            rank_cpu, rank_wall = child_cpu(["rank", *common, "--out", str(Path(tmp) / "rank.txt")])
            report_cpu, report_wall = child_cpu(["report", *common, "--no-per-sample", "--out", str(Path(tmp) / "r.html")])
            ratio = report_cpu / rank_cpu
            ratios.append(ratio)
            print(f"{'command':<8s} {'CPU s':>8s} {'wall s':>8s}")
            print(f"{'rank':<8s} {rank_cpu:8.2f} {rank_wall:8.2f}")
            print(f"{'report':<8s} {report_cpu:8.2f} {report_wall:8.2f}")
            print(f"report / rank CPU: {ratio:.2f}x ({'PASS' if ratio <= TARGET_RATIO else 'FAIL'} <= {TARGET_RATIO}x); "
                  f"load average now {os.getloadavg()[0]:.1f}", flush=True)
    if args.repeats > 1:
        median = statistics.median(ratios)
        print(f"median report / rank CPU over {args.repeats}: {median:.2f}x "
              f"({'PASS' if median <= TARGET_RATIO else 'FAIL'} <= {TARGET_RATIO}x)")


if __name__ == "__main__":
    main()
