"""End to end: 64 quick-FCN MNIST runs through ``python -m collect`` against a plain PyTorch loop, side by side.

What it measures: wall-clock seconds for four ways of doing the same work on the same ``--runs`` configurations
(64: 16 seeds × 4 learning rates), written as one sweep spec TOML in a temporary directory and expanded with
``collect.sweep.expand``, so every row trains exactly the configurations that spec lists:

- the quick sweep's model and data (``collect/sweeps/quick.toml``): embedded MNIST, n_train = n_test = 1,000
  (the data seed is the run seed), fcn 784-128-128-10 (ReLU, width 128, depth 2), cross-entropy, SGD, batch 32;
- a fixed budget of ``stop.max_epochs`` = ``--epochs`` (20) and no target, so every run trains the same
  S = epochs · ⌈n_train / 32⌉ steps (640) on every path;
- learning rates 0.01, 0.02, 0.05, 0.1 (the quick sweep's SGD rate and three below it), seeds 0, 1, 2, ...;
- ``measures = ["margins"]`` only.

Rows (each a fresh store in the temporary directory; all rows of one repeat train the same configurations):

1. ``collect default``: ``python -m collect --config SPEC --tracking-uri sqlite:///TMP/a<i>.db`` as a subprocess,
   no other option (start-up, imports, store creation, workers, per-epoch evaluation, measuring, MLflow logging
   included; whatever ``--stack auto`` decides: its choice line is printed);
2. ``collect one at a time``: the same with ``--stack off --workers 1``;
3. ``collect --stack on``: the same with ``--stack on`` (every stackable group stacked, whatever ``auto`` says), to
   check ``auto``'s choice;
4. ``plain loop``: in this process, one configuration after another: the run's data tensors
   (``collect.data.load_dataset``, the same arrays collect trains on), ``nn.Sequential`` + ``torch.optim.SGD``, a
   ``randperm`` per epoch, then the final train and test accuracy and the output margins
   γ_i = f_{y_i}(x_i) − max_{j≠y_i} f_j(x_i) on the training set (what the margins-only collect run computes, minus
   evaluation curves, summaries and logging), with torch threads = the usable core count. It does not pay Python
   start-up or the torch import, which collect's rows pay: that makes the goal harder, not easier.

Printed per row: seconds, runs/s and the effective training rate GFLOP/s = runs · S · F / seconds, with the FLOP
count of one training step per run (forward 2·B·Σ_k in_k·out_k, backward twice that, less the first layer's input
gradient; the convention of ``bench_training.py`` and ``collect.stack_cost``):

    F = 2 · B · (3 · Σ_k in_k · out_k − in_0 · out_0)        (784-128-128-10, B = 32: 16.2 MFLOP)

(S counts the last, partial batch of an epoch as a full one.) The evaluation passes collect makes (a full train +
test forward each epoch: 2 · (n_train + n_test) · Σ_k in_k · out_k = 0.47 GFLOP an epoch at 1,000 + 1,000 points,
against 32 · F = 0.52 GFLOP of training) and the measures are extra work in collect's rows and not counted. Ratios
(> 1: collect default is faster): "plain / collect default" = plain seconds / default seconds (goal ≥ 1.5) and
"one-at-a-time / default" = one-at-a-time seconds / default seconds (goal ≥ 3). With ``--repeats N`` the three rows
run N times interleaved (default, one at a time, plain; then again), each collect row on a fresh store, and the
median of each ratio over the N repeats is printed. Machine facts: usable cores, torch threads, the load average at
start and end; a 1-minute load average above the core count at start makes the figures worthless and prints a
warning.

Run by hand from the repository root on an idle machine:

    python tests/benchmarks/bench_end_to_end.py                # 64 runs × 20 epochs, the three rows once
    python tests/benchmarks/bench_end_to_end.py --repeats 3    # three interleaved repeats, median ratios
    python tests/benchmarks/bench_end_to_end.py --tiny         # 4 runs, 1 epoch, 200 points: checks that it runs
    python tests/benchmarks/bench_end_to_end.py --runs 16 --epochs 5 --n-points 500   # resized

``--runs`` takes ⌈runs / 4⌉ seeds × the 4 learning rates; when it is not a multiple of 4, the collect rows add
``--max-runs RUNS`` (the spec's first RUNS configurations, the ones the plain loop trains).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script from the repository root

from bench_training import plain_epochs  # noqa: E402  (this folder is on sys.path when run as a script)
from collect.config import RunConfig
from collect.data import load_dataset
from collect.executors import usable_cores
from collect.logits import output_margins
from collect.sweep import expand, load_spec

LEARNING_RATES = (0.01, 0.02, 0.05, 0.1)
WIDTH, DEPTH, BATCH = 128, 2, 32  # the quick sweep's fcn and batch size


def spec_text(runs: int, epochs: int, n_points: int) -> str:
    """The sweep spec: quick-FCN MNIST, SGD batch 32, ``epochs`` as a fixed budget, margins only, ⌈runs / 4⌉ seeds ×
    the 4 learning rates (``--max-runs`` trims to ``runs``)."""
    seeds = list(range(math.ceil(runs / len(LEARNING_RATES))))
    return f'''name = "bench-end-to-end"
description = "bench_end_to_end.py: {runs} quick-FCN MNIST runs, {epochs} epochs, margins only"
seeds = {seeds}
measures = ["margins"]

[base]
loss = "cross_entropy"

[base.data]
dataset = "mnist"
n_train = {n_points}
n_test = {n_points}
attack_size = 0

[base.model]
arch = "fcn"
width = {WIDTH}
depth = {DEPTH}
activation = "relu"

[base.optim]
optimizer = "sgd"
lr = 0.1
batch_size = {BATCH}

[base.stop]
max_epochs = {epochs}

[grid]
"optim.lr" = {list(LEARNING_RATES)}
'''


def step_flop(dims: list[int], batch: int) -> int:
    """F = 2 · B · (3 · Σ_k in_k · out_k − in_0 · out_0): FLOP of one training step of one run."""
    products = [a * b for a, b in zip(dims[:-1], dims[1:])]
    return 2 * batch * (3 * sum(products) - products[0])


@dataclass(frozen=True)
class CollectRow:
    seconds: float
    choice: str  # the "--stack ..." line collect printed
    finished: int | None  # runs collect reported FINISHED (None when its summary line was not found)
    failed: int | None


def run_collect(spec: Path, store: Path, trim: int | None, extra: list[str]) -> CollectRow:
    """Wall seconds of ``python -m collect --config spec --tracking-uri sqlite:///store [extra]`` as a subprocess
    (``--max-runs trim`` only when ``--runs`` is not a multiple of the 4 learning rates)."""
    cmd = [sys.executable, "-m", "collect", "--config", str(spec), "--tracking-uri", f"sqlite:///{store}",
           *(["--max-runs", str(trim)] if trim is not None else []), *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    choice = next((ln for ln in proc.stdout.splitlines() if ln.startswith("--stack")), "(no --stack line printed)")
    m = re.search(r"(\d+) finished, (\d+) failed", proc.stdout)
    return CollectRow(seconds, choice, int(m[1]) if m else None, int(m[2]) if m else None)


def plain_loop(cfgs: list[RunConfig], device: torch.device) -> float:
    """Wall seconds of the naive sequential script over every config: load its data, train, then final train/test
    accuracy and the training set's output margins."""
    results = []
    start = time.perf_counter()
    for cfg in cfgs:
        ds = load_dataset(cfg.data, cfg.data_seed, cache_dir=REPO / "data" / "cache")
        x = torch.as_tensor(ds.x_train, dtype=torch.float32, device=device).flatten(1)
        y = torch.as_tensor(ds.y_train, dtype=torch.long, device=device)
        x_test = torch.as_tensor(ds.x_test, dtype=torch.float32, device=device).flatten(1)
        y_test = torch.as_tensor(ds.y_test, dtype=torch.long, device=device)
        torch.manual_seed(cfg.seed)
        d, w = x.shape[1], cfg.model.width
        net = nn.Sequential(nn.Linear(d, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, ds.num_classes)).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=cfg.optim.lr)
        g = torch.Generator().manual_seed(cfg.seed)
        plain_epochs(net, opt, x, y, cfg.optim.batch_size, cfg.stop.max_epochs, g)
        with torch.no_grad():
            logits = net(x)
            train_acc = (logits.argmax(1) == y).float().mean().item()
            test_acc = (net(x_test).argmax(1) == y_test).float().mean().item()
            margins = output_margins(logits.double(), y).cpu().numpy()
        results.append((train_acc, test_acc, margins))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if not all(len(m) == len(x) for _, _, m in results):
        raise SystemExit("error: plain loop: a margin array has the wrong length")
    return seconds


def loadavg() -> float:
    return os.getloadavg()[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=64, help="configurations (seeds x 4 learning rates, trimmed; default 64)")
    p.add_argument("--epochs", type=int, default=20, help="fixed budget stop.max_epochs (default 20)")
    p.add_argument("--n-points", type=int, default=1000, help="n_train = n_test (default 1000, the quick sweep's)")
    p.add_argument("--repeats", type=int, default=1, help="repeat the four rows N times interleaved; median ratios")
    p.add_argument("--tiny", action="store_true", help="4 runs, 1 epoch, 200 points: checks that it runs")
    args = p.parse_args()
    if args.tiny:
        args.runs, args.epochs, args.n_points = 4, 1, 200
    for name in ("runs", "epochs", "n_points", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} = {getattr(args, name)}: must be >= 1")

    cores = usable_cores()
    torch.set_num_threads(cores)
    device = torch.device("cpu")  # collect's default --device is cpu as well
    load_start = loadavg()

    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp_name:
        tmp = Path(tmp_name)
        spec = tmp / "bench_end_to_end.toml"
        spec.write_text(spec_text(args.runs, args.epochs, args.n_points))
        planned = expand(load_spec(spec))
        cfgs = [r.config for r in planned][: args.runs]
        trim = args.runs if len(planned) > args.runs else None
        ds = load_dataset(cfgs[0].data, cfgs[0].data_seed, cache_dir=REPO / "data" / "cache")
        dims = [math.prod(ds.x_train.shape[1:])] + [WIDTH] * DEPTH + [ds.num_classes]
        steps = args.epochs * math.ceil(args.n_points / BATCH)
        total_flop = len(cfgs) * steps * step_flop(dims, BATCH)

        print(f"{len(cfgs)} runs (seeds {cfgs[0].seed}-{cfgs[-1].seed} x lr {', '.join(map(str, LEARNING_RATES))}), "
              f"fcn {'-'.join(map(str, dims))}, SGD batch {BATCH}, {args.epochs} epoch(s) = {steps} steps a run, "
              f"mnist {args.n_points} + {args.n_points} points, margins only; spec {spec.name} in a temporary folder")
        print(f"machine: {cores} usable cores (os.cpu_count() = {os.cpu_count()}), torch {torch.__version__}, "
              f"{torch.get_num_threads()} torch threads in the plain loop, load average at start {load_start:.2f}")
        if load_start > cores:
            print(f"WARNING: the 1-minute load average at start ({load_start:.2f}) exceeds the {cores} cores: the machine "
                  "is loaded and these figures are worthless; re-run on an idle machine")

        rows: dict[str, list[float]] = {"collect default": [], "collect one at a time": [], "collect --stack on": [],
                                        "plain loop": []}
        for rep in range(args.repeats):
            default = run_collect(spec, tmp / f"a{rep}.db", trim, [])
            alone = run_collect(spec, tmp / f"b{rep}.db", trim, ["--stack", "off", "--workers", "1"])
            stack_on = run_collect(spec, tmp / f"c{rep}.db", trim, ["--stack", "on"])
            plain = plain_loop(cfgs, device)
            print(f"repeat {rep + 1}/{args.repeats}: collect default {default.seconds:.2f} s, one at a time "
                  f"{alone.seconds:.2f} s, --stack on {stack_on.seconds:.2f} s, plain loop {plain:.2f} s; "
                  f"collect default printed: {default.choice}; --stack on printed: {stack_on.choice}")
            for name, row in (("default", default), ("one at a time", alone), ("--stack on", stack_on)):
                if row.finished != len(cfgs):
                    print(f"WARNING: collect {name} finished {row.finished} of {len(cfgs)} runs ({row.failed} failed): "
                          "its time is not comparable")
            rows["collect default"].append(default.seconds)
            rows["collect one at a time"].append(alone.seconds)
            rows["collect --stack on"].append(stack_on.seconds)
            rows["plain loop"].append(plain)

    print(f"\n{'path':24s} {'seconds':>8s} {'runs/s':>8s} {'GFLOP/s':>8s}   (median of {args.repeats}; training FLOPs "
          f"{total_flop / 1e9:.3g} GFLOP)")
    for name, secs in rows.items():
        s = statistics.median(secs)
        print(f"{name:24s} {s:8.2f} {len(cfgs) / s:8.2f} {total_flop / s / 1e9:8.3g}")
    plain_ratio = [p / d for p, d in zip(rows["plain loop"], rows["collect default"])]
    alone_ratio = [a / d for a, d in zip(rows["collect one at a time"], rows["collect default"])]
    for label, ratios, goal in (("plain / collect default", plain_ratio, 1.5),
                                ("one-at-a-time / default", alone_ratio, 3.0)):
        each = ", ".join(f"{r:.2f}" for r in ratios)
        median = statistics.median(ratios)
        print(f"{label:24s} {median:6.2f}x  (goal >= {goal:g}x: {'met' if median >= goal else 'not met'}; "
              f"each repeat: {each})")
    load_end = loadavg()
    print(f"load average at start {load_start:.2f}, at end {load_end:.2f} ({cores} cores)")
    if load_start > cores:
        print("WARNING: loaded machine at start: the figures above are worthless")


if __name__ == "__main__":
    main()
