"""First-call cost of the exact Hessian trace in a fresh process: ``exact_per_sample_trace`` timed three times
(process CPU seconds), with or without a warm-up call on a tiny net first (``--warm``).

Run from the repository root: ``python tests/benchmarks/bench_first_call.py`` and ``... --warm`` (each a fresh
process; a few seconds each). The first call of a process imports ``torch._dynamo``; a warm-up pays the same.
"""

from __future__ import annotations

import argparse
import time

import torch

from collect.config import ModelConfig
from collect.hessian.per_sample import exact_per_sample_trace
from collect.models import build_model


def timed_call(width: int, points: int, shape: tuple[int, ...], seed: int = 0) -> float:
    """Process CPU seconds of one exact per-sample trace of a depth-2 FCN of ``width`` on ``points`` random inputs."""
    net = build_model(ModelConfig(arch="fcn", width=width, depth=2), shape, 10, seed).eval()
    x, y = torch.randn(points, *shape), torch.randint(0, 10, (points,))
    started = time.process_time()
    exact_per_sample_trace(net, x, y, loss="cross_entropy")
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warm", action="store_true", help="first a warm-up call on a 6-4-4-10 net with 8 points")
    parser.add_argument("--points", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.warm:
        print(f"warm-up (6-4-4-10, 8 points): {timed_call(4, 8, (6,)):.3f} s CPU")
    calls = [timed_call(128, args.points, (1, 28, 28), seed=i) for i in range(3)]
    print(f"quick model (784-128-128-10), {args.points} points: " + ", ".join(f"{c:.3f}" for c in calls) + " s CPU")


if __name__ == "__main__":
    main()
