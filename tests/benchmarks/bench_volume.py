"""Benchmark of the log volume log P(f): kernel + EP on binarised MNIST at |S| + |E| = 500, 1,500, 5,000.

Run by hand: ``python tests/benchmarks/bench_volume.py`` (``--quick``: 500 and 1,500 only, fewer Boolean samples).
Target: 1,500 points (paper 002's MNIST setting, |S| = 500, |E| = 1,000) in under 30 s including the kernel.
Each size runs in a fresh subprocess so its peak resident memory (ru_maxrss, minus the process's RSS after
imports and data loading) is its own. Also printed, measured side by side in this run: parallel against
sequential EP at 500 points, the arc-cosine kernel against the Monte-Carlo empirical kernel (M = 0.1 n) for the
same FCN, and direct sampling speed of P(f) on the n = 7 Boolean system.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one_size(n: int, schedule: str, kernel: str) -> dict[str, float]:
    """Kernel + EP for n binarised-MNIST points labelled by their true class (the function of a perfect classifier)."""
    import torch

    from collect.config import DataConfig, ModelConfig
    from collect.data import load_dataset
    from collect.nngp.ep import ep_log_prob
    from collect.nngp.kernels import default_mc_samples, empirical_kernel, random_init_features, relu_nngp_kernel

    n_train = n // 3
    data = load_dataset(DataConfig(dataset="mnist", binary="low_high", n_train=n_train, n_test=n - n_train), seed=0)
    x = torch.cat([torch.as_tensor(data.x_train), torch.as_tensor(data.x_test)]).reshape(n, -1)
    f = torch.cat([torch.as_tensor(data.y_train), torch.as_tensor(data.y_test)]).double() * 2 - 1
    base = _rss_mib()
    start = time.perf_counter()
    if kernel == "arccos":
        k = relu_nngp_kernel(x, 2, 1.0, 0.1)
    else:
        cfg = ModelConfig(arch="fcn", width=40, depth=2)
        k = empirical_kernel(random_init_features(cfg, (784,), 2, x, default_mc_samples(n), 1.0, 0.1, seed=0), 1.0, 0.1)
    t_kernel = time.perf_counter() - start
    result = ep_log_prob(k, f, schedule=schedule)
    t_ep = time.perf_counter() - start - t_kernel
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "n": n, "kernel_s": t_kernel, "ep_s": t_ep, "total_s": t_kernel + t_ep, "iterations": result.iterations,
        "converged": result.converged, "log_p": result.log_prob, "peak_extra_mib": peak - base,
    }


def run_child(n: int, schedule: str = "parallel", kernel: str = "arccos") -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(n), schedule, kernel], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def boolean_sampling(n_samples: int) -> tuple[float, int]:
    import torch

    from collect.boolean import boolean_inputs
    from collect.nngp.sampling import sample_fcn_functions

    start = time.perf_counter()
    counts = sample_fcn_functions(torch.tensor(boolean_inputs()), n_samples, seed=0)
    return time.perf_counter() - start, len(counts.counts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_size(int(args.child[0]), args.child[1], args.child[2])))
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; log P(f) = kernel + EP (float64)")
    sizes = [500, 1500] if args.quick else [500, 1500, 5000]
    rows = {}
    for n in sizes:
        r = rows[n] = run_child(n)
        print(
            f"  n = {n:5d}: kernel {r['kernel_s']:6.2f} s + EP {r['ep_s']:7.2f} s ({r['iterations']} iterations, "
            f"converged {r['converged']}) = {r['total_s']:7.2f} s, peak memory +{r['peak_extra_mib']:.0f} MiB, "
            f"log P = {r['log_p']:.1f}",
            flush=True,
        )
    print(f"target: n = 1,500 under 30 s -> {rows[1500]['total_s']:.1f} s ({rows[1500]['total_s'] / 30:.2f} of the budget)")
    if 5000 in rows:
        print(f"scaling 1,500 -> 5,000: x{rows[5000]['ep_s'] / rows[1500]['ep_s']:.1f} EP time (n^3 would be x37)")

    seq = run_child(500, schedule="sequential")
    par = rows[500]
    print(
        f"side by side at n = 500: parallel EP {par['ep_s']:.2f} s vs sequential {seq['ep_s']:.2f} s "
        f"(ratio {seq['ep_s'] / par['ep_s']:.1f}); |log P difference| = {abs(seq['log_p'] - par['log_p']):.2e}"
    )
    emp = run_child(1500, kernel="empirical")
    print(
        f"side by side at n = 1,500: empirical kernel (M = 150 FCNs) {emp['kernel_s']:.2f} s vs arc-cosine "
        f"{rows[1500]['kernel_s']:.2f} s; log P {emp['log_p']:.1f} (empirical, width 40) vs {rows[1500]['log_p']:.1f} (NNGP)"
    )
    n_samples = 200_000 if args.quick else 1_000_000
    seconds, distinct = boolean_sampling(n_samples)
    print(
        f"Boolean system direct sampling: {n_samples:,} random FCNs (2 x 40 ReLU) in {seconds:.1f} s "
        f"({n_samples / seconds:,.0f} per s; {distinct:,} distinct functions)"
    )


if __name__ == "__main__":
    main()
