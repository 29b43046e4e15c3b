"""Cost of the default `quick` sweep: CPU seconds per run on a spread sample of its configurations (one process,
one torch thread), and the wall time that implies for `python -m collect` on 2 idle cores (2 workers).

CPU time, unlike wall time, barely depends on what else the machine runs, so the estimate holds on a busy machine.
Run by hand: `python tests/benchmarks/bench_quick_cost.py [--every 16]` (8 runs by default, a few minutes).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from collect.runner import run_sweep
from collect.sweep import expand, find_sweep, load_spec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--every", type=int, default=16, help="measure every n-th planned run (default 16: 8 of 128)")
    args = p.parse_args()
    runs = expand(load_spec(find_sweep("quick")))
    sample = runs[:: args.every]
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        cpu, wall = time.process_time(), time.perf_counter()
        summary = run_sweep(sample, sweep="quick", tracking_uri=uri, device="cpu", progress=False, torch_threads=1)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    per_run = cpu / len(sample)
    print(f"{len(sample)} of {len(runs)} runs ({summary.finished} finished): {cpu:.1f} CPU s, {per_run:.2f} CPU s per run, {wall:.1f} s wall here")
    print(f"estimate for all {len(runs)} runs on 2 idle cores, 2 workers: {len(runs) * per_run / 2 / 60:.1f} min (plus worker start-up)")


if __name__ == "__main__":
    main()
