"""Benchmark of stacked training (``python -m collect --stack``, collect/train_stacked.py) against today's path, one run at a
time in ``--workers 2`` processes, on 32 runs that share a shape, side by side in one invocation.

The 32 runs are the quick sweep's model and data (MNIST 1,000/1,000, fcn 2 x 128, batch 32, SGD, up to 15 epochs to
100 % train accuracy + 2 epochs) with learning rate {0.02, 0.05} x weight decay {0, 5e-4} x dropout {0, 0.5} x
4 seeds (``--dataset mnist1d --width 32``: the ``study`` sweep's shape, 40 inputs). Measures: margins and norms
only (cheap), so that training dominates; ``--measures quick`` adds the quick sweep's full measure list to show
where the time then goes. The stacked path trains the stack in the driver process and measures and logs its runs
in 2 worker processes (``--stack --workers 2``). Prints wall time, runs/hour and their ratio, and the
per-run medians the store records (train.seconds and the measures' time.* values), i.e. what limits the speed-up.

``--study``: the first 32 runs of ``python -m collect --sweep study --scale small`` instead (MNIST-1D, MLP 1 × 64,
SGD momentum 0.9 to train cross-entropy 0.01 or 100 epochs; lr 0.01, batch 32 and 64, dropout × weight decay × 2
seeds: two stacks), with the study's measures — runs long enough that training, which stacking speeds up, weighs.

Run by hand from the repository root: ``python tests/benchmarks/bench_stacked.py`` (``--runs 8`` for a quick check;
``--device cuda`` on a GPU machine).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHEAP = '["margins", "norms"]'
def quick_measures() -> str:
    """The quick sweep's measure list, as its spec writes it (collect/sweeps/quick.toml)."""
    text = (ROOT / "collect" / "sweeps" / "quick.toml").read_text()
    start = text.index("measures = [") + len("measures = ")
    return text[start : text.index("]\n", start) + 1]


def spec(n_seeds: int, measures: str, dataset: str = "mnist", width: int = 128) -> str:
    seeds = ", ".join(str(s) for s in range(n_seeds))
    return f"""name = "bench-stacked"
seeds = [{seeds}]
measures = {measures}
[base]
loss = "cross_entropy"
[base.data]
dataset = "{dataset}"
n_train = 1000
n_test = 1000
[base.model]
arch = "fcn"
width = {width}
depth = 2
[base.optim]
optimizer = "sgd"
lr = 0.05
batch_size = 32
[base.stop]
max_epochs = 15
train_acc = 1.0
extra_epochs = 2
[grid]
"optim.lr" = [0.02, 0.05]
"optim.weight_decay" = [0.0, 0.0005]
"model.dropout" = [0.0, 0.5]
"""


def run(label: str, args: list[str], uri: str) -> tuple[float, float]:
    """Wall seconds and CPU seconds of the command (user + system; the forkserver workers of ``--workers 2`` are not
    its children, so their CPU is not included there — ``train_only`` compares CPU in one process)."""
    cmd = [sys.executable, "-m", "collect", *args, "--tracking-uri", uri, "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{label} failed:\n{done.stdout}\n{done.stderr}")
    print(f"  {label:<34s} {wall:7.1f} s wall  {cpu:7.1f} s CPU", flush=True)
    return wall, cpu


def medians(uri: str) -> dict[str, float]:
    from mlflow import MlflowClient

    from collect import tracking

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("bench-stacked")
    kids = [r for r in tracking.child_runs(client, exp.experiment_id) if r.info.status == "FINISHED"]
    keys = sorted({k for r in kids for k in r.data.metrics if k == "train/seconds" or k.startswith("time/")})
    out = {k: statistics.median(r.data.metrics[k] for r in kids if k in r.data.metrics) for k in keys}
    out["runs"] = len(kids)
    return out


def train_only(n_seeds: int, epochs: int, dataset: str = "mnist", width: int = 128) -> None:
    """Training alone, in this process, 1 torch thread: the stack against the same runs one after another
    (collect.train.train, as run_one calls it). CPU seconds are what the code costs on an uncontended core."""
    import tomllib

    import torch

    from collect.data import load_dataset
    from collect.losses import get_loss
    from collect.models import build_model
    from collect.optim import build_optimizer
    from collect.runner import to_tensors
    from collect.train_stacked import train_stack
    from collect.sweep import expand, parse_spec
    from collect.train import train

    torch.set_num_threads(1)
    raw = tomllib.loads(spec(n_seeds, CHEAP, dataset, width))
    raw["base"]["stop"] = {"max_epochs": epochs}
    configs = [r.config for r in expand(parse_spec(raw, "bench.toml"))]
    ds = load_dataset(configs[0].data, configs[0].data_seed)
    cpu, wall = time.process_time(), time.perf_counter()
    train_stack(configs, torch.device("cpu"))
    stacked = (time.process_time() - cpu, time.perf_counter() - wall)
    cpu, wall = time.process_time(), time.perf_counter()
    for cfg in configs:
        ds = load_dataset(cfg.data, cfg.data_seed)
        torch.manual_seed(cfg.seed)
        loss_fn = get_loss(cfg.loss)
        model = build_model(cfg.model, ds.input_shape, ds.num_classes, cfg.seed)
        train(cfg, model, to_tensors(ds, torch.device("cpu")), loss_fn, lambda m, c=cfg, f=loss_fn: build_optimizer(c.optim, m, f),
              progress=False)
    alone = (time.process_time() - cpu, time.perf_counter() - wall)
    print(f"training only, {dataset} fcn 2x{width}, {len(configs)} runs x {epochs} epochs in this process (1 thread): one at a time "
          f"{alone[0]:.1f} s CPU ({alone[1]:.1f} s wall), stacked {stacked[0]:.1f} s CPU ({stacked[1]:.1f} s wall) "
          f"-> {alone[0] / stacked[0]:.2f}x CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=32, choices=(8, 16, 24, 32), help="8 configurations x runs/8 seeds")
    parser.add_argument("--measures", choices=("cheap", "quick"), default="cheap")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-only", action="store_true", help="only the in-process training comparison")
    parser.add_argument("--dataset", default="mnist", help="mnist (784 inputs) or mnist1d (40 inputs)")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--study", action="store_true",
                        help="the first 32 runs of the study sweep's 'small' scale instead (MNIST-1D MLPs trained to "
                             "cross-entropy 0.01 or 100 epochs; two shapes of 18 and 14 runs), with its measures")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.train_only:
        train_only(args.runs // 8, 3, args.dataset, args.width)
        return
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(spec(args.runs // 8, CHEAP if args.measures == "cheap" else quick_measures(), args.dataset, args.width))
        common = ["--config", str(path), "--device", args.device]
        if args.study:
            common = ["--sweep", "study", "--scale", "small", "--max-runs", str(args.runs), "--experiment", "bench-stacked",
                      "--device", args.device]
        uris = {"one at a time": f"sqlite:///{tmp}/a.db", "stacked": f"sqlite:///{tmp}/b.db"}
        print(f"first {args.runs} runs of the study sweep (scale small), its measures" if args.study
              else f"{args.runs} runs of one shape, measures: {args.measures}")
        timed = {
            "one at a time": run("one at a time (--stack off --workers 2)", [*common, "--stack", "off", "--workers", "2"], uris["one at a time"]),
            "stacked": run("stacked (--stack --workers 2)", [*common, "--stack", "--workers", "2"], uris["stacked"]),
        }
        wall = {k: v[0] for k, v in timed.items()}
        cpu = {k: v[1] for k, v in timed.items()}
        stats = {k: medians(u) for k, u in uris.items()}
    for k in wall:
        print(f"  {k:<14s} {stats[k]['runs']:3d} runs finished, {3600 * stats[k]['runs'] / wall[k]:8.0f} runs/hour")
    print(f"  speed-up of stacked over one at a time: {wall['one at a time'] / wall['stacked']:.2f}x wall (goal >= 3x), "
          f"{cpu['one at a time'] / cpu['stacked']:.2f}x CPU seconds")
    print("  per-run medians (s)      " + "  ".join(f"{k:>14s}" for k in wall))
    for key in sorted(set(stats["stacked"]) - {"runs"}):
        print(f"    {key:<22s} " + "  ".join(f"{stats[k].get(key, float('nan')):14.3f}" for k in wall))
    print("  (stacked train/seconds is the stack's training wall time divided by its runs)")
    if not args.study:
        train_only(args.runs // 8, 3, args.dataset, args.width)
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
