"""What the multistart round rule of Keskar sharpness buys: value and cost at the default rule against one round
of 12 restarts and against adding rounds while a round raises the best at all (at most 36 restarts), side by side in one run.

Part A: the 60-case panel of tests/collect/hessian/test_sharpness_panel.py (ReLU, tanh and batch-norm nets, seeds
0-4, ε = 1e-4 … 5e-2), each value as a ratio to the panel's brute-force reference; worst and mean ratio, loss
evaluations and CPU seconds. Part B: trained quick-sweep FCNs (ε = 1e-3, 500 points, as the quick sweep measures
them): values, restarts and CPU seconds per rule.

    PYTHONPATH=$PWD python tests/benchmarks/bench_sharpness_rounds.py [--runs 9] [--only panel|quick]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from collect.hessian import sharpness as box
from collect.hessian.operator import ChunkedLoss

RULES = {
    "default (refind 2 within 1 %)": {},
    "one round of 12": {"max_restarts": box.RESTARTS},
    "rounds while any gain (<= 36)": {"refound": 10**6, "round_tol": 0.0},
}


def _run(loss: ChunkedLoss, eps: float, generator: torch.Generator, **kw) -> tuple[box.BoxMax, float]:
    t = time.process_time()
    res = box.keskar_sharpness(loss, epsilon=eps, generator=generator, **kw)
    return res, time.process_time() - t


def panel() -> None:
    from tests.collect.hessian.test_sharpness_panel import EPSILONS, reference_sharpness
    from tests.collect.hessian.tiny_nets import NETS, cpu_generator, trained_net, vector_data
    from collect.losses import cross_entropy

    stats = {k: {"ratios": [], "evals": 0, "cpu": 0.0} for k in RULES}
    for net in sorted(NETS):
        for seed in range(5):
            x, y = vector_data()
            model = trained_net(net, seed)
            loss = ChunkedLoss(model, cross_entropy, x, y)
            for eps in EPSILONS:
                ref = reference_sharpness(model, eps)
                for name, kw in RULES.items():
                    res, cpu = _run(loss, eps, cpu_generator(seed), **kw)
                    s = stats[name]
                    s["ratios"].append(res.sharpness / ref)
                    s["evals"] += res.n_evals
                    s["cpu"] += cpu
    print(f"A. panel, {len(stats[next(iter(RULES))]['ratios'])} cases (load {os.getloadavg()[0]:.1f})")
    for name, s in stats.items():
        r = s["ratios"]
        print(f"  {name:30s} worst {min(r):.3f}  mean {sum(r) / len(r):.4f}  evals {s['evals']:6d}  cpu {s['cpu']:.1f} s")


def quick(runs: int) -> None:
    from tests.benchmarks.bench_curvature import quick_configs, trained

    totals = {k: [0.0, 0] for k in RULES}
    same = 0
    for cfg in quick_configs(runs):
        ctx = trained(cfg)
        loss = ChunkedLoss(ctx.model, ctx.loss_fn, ctx.x_train[:500], ctx.y_train[:500])
        row = {}
        for name, kw in RULES.items():
            res, cpu = _run(loss, 1e-3, ctx.generator(107), **kw)
            row[name] = res.sharpness
            totals[name][0] += cpu
            totals[name][1] += res.n_evals
            print(f"  {name:30s} sharpness {res.sharpness:.6g}  restarts {res.n_restarts}  cpu {cpu:.2f} s")
        same += abs(row[next(iter(RULES))] - row["rounds while any gain (<= 36)"]) <= 1e-2 * row["rounds while any gain (<= 36)"]
    print(f"B. quick FCN, {runs} runs (load {os.getloadavg()[0]:.1f}): default within 1 % of rounds-while-any-gain in {same}/{runs}")
    for name, (cpu, evals) in totals.items():
        print(f"  {name:30s} cpu {cpu:.1f} s  evals {evals}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--only", choices=["panel", "quick"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.only in (None, "panel"):
        panel()
    if args.only in (None, "quick"):
        quick(args.runs)


if __name__ == "__main__":
    main()
