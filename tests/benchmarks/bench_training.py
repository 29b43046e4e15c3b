"""Training speed side by side in one process: a plain PyTorch loop, flatlas one run at a time
(``collect.train.train``), a stack of runs (``collect.train_stacked.train_stack``) and the batched-matmul rate of
that stack's shapes.

Setting (the quick sweep's model and data): MNIST 784 inputs, ``--n-train`` points (1,000), fcn 784-W-W-10
(W = ``--width``, 128), batch 32, SGD, ``--epochs`` epochs (20), ``--runs`` runs (16) that differ in seed and
learning rate (0.02, 0.05 alternating), ``--threads`` torch threads (2). Every path trains the same ``--runs``
configurations for the same number of steps (a budget, no target). The rows run in ``--repeats`` interleaved rounds
(5), each round in a shuffled order (seeded), and each figure is the median over the rounds.

Rows:

- ``plain loop``: ``nn.Sequential`` + ``torch.optim.SGD``, a ``randperm`` per epoch, nothing else, runs one after
  another (the naive script a researcher would write);
- ``train() per-epoch eval``: ``collect.train.train`` as ``run_one`` calls it (a full train + test evaluation each
  epoch: the curves and the stop rule's checks);
- ``train() eval at end``: the same with ``stop.eval_every`` = the budget (the training steps and one evaluation);
- ``train() steps alone``: the marginal cost of its step, the final evaluation excluded: (t(E epochs) − t(1 epoch))
  / (E − 1) epochs, scaled to E epochs (both with one evaluation at the end), against the plain loop's step;
- ``train_alone() ...``: the same three rows for ``collect.train_stacked.train_alone``, which ``run_one`` uses one
  run at a time for these runs (fcn, SGD, cross-entropy): a stack of one whose step is the written-out chain rule with
  the SGD update accumulated into the weights;
- ``stack of R per-epoch eval``: ``train_stack`` on all runs at once, as ``--stack`` runs it;
- ``stack of R eval at end``: the same with one evaluation at the end (set-up, data and models included);
- ``stack of R steps alone``: the marginal cost of the stacked step, set-up and the final evaluation excluded:
  (t(E epochs) − t(1 epoch)) / (E − 1) epochs, scaled to E epochs (both stacks with one evaluation at the end);
- ``bmm rate``: the batched matrix products one stacked SGD step performs (forward, weight gradients, input
  gradients of the hidden layers) timed alone, the ceiling for the stack.

FLOPs of a training step (per run): 2·B·Σ_k in_k·out_k forward, twice that backward, less the first layer's input
gradient: F = 2·B·(3·Σ_k in_k·out_k − in_0·out_0). GFLOP/s = runs · steps · F / seconds (evaluation passes are
extra work in the flatlas rows and not counted). "vs plain" = plain-loop seconds / row seconds (> 1: faster);
"% bmm" = the row's GFLOP/s over the bmm rate.

Run by hand from the repository root on an idle machine: ``python tests/benchmarks/bench_training.py``
(``--tiny`` for a few-second check that it runs; ``--device cuda`` on a GPU machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from collect.config import run_config_from_dict
from collect.data import load_dataset
from collect.losses import get_loss
from collect.models import build_model
from collect.optim import build_optimizer
from collect.runner import to_tensors
from collect.train import train
from collect.train_stacked import train_alone, train_stack


def configs(args: argparse.Namespace) -> list:
    return [run_config_from_dict({
        "seed": r,
        "data": {"dataset": args.dataset, "n_train": args.n_train, "n_test": args.n_train},
        "model": {"arch": "fcn", "width": args.width, "depth": 2},
        "optim": {"optimizer": "sgd", "lr": (0.02, 0.05)[r % 2], "batch_size": args.batch},
        "stop": {"max_epochs": args.epochs},
    }) for r in range(args.runs)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_epochs(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, batch: int, epochs: int,
                 generator: torch.Generator) -> None:
    """The naive training loop: a ``randperm`` per epoch, minibatches of ``batch``, cross-entropy, ``opt.step()``."""
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator).to(x.device)
        for i in range(0, len(y), batch):
            idx = order[i : i + batch]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()


def plain_loop(cfgs: list, device: torch.device) -> float:
    """Seconds for the naive sequential loop over every config."""
    total = 0.0
    for cfg in cfgs:
        ds = load_dataset(cfg.data, cfg.data_seed)
        x = torch.as_tensor(ds.x_train, dtype=torch.float32, device=device).reshape(len(ds.x_train), -1)
        y = torch.as_tensor(ds.y_train, dtype=torch.long, device=device)
        torch.manual_seed(cfg.seed)
        d, w = x.shape[1], cfg.model.width
        net = nn.Sequential(nn.Linear(d, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 10)).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=cfg.optim.lr)
        g = torch.Generator().manual_seed(cfg.seed)
        sync(device)
        start = time.perf_counter()
        plain_epochs(net, opt, x, y, cfg.optim.batch_size, cfg.stop.max_epochs, g)
        sync(device)
        total += time.perf_counter() - start
    return total


def flatlas_single(cfgs: list, device: torch.device, eval_at_end: bool, epochs: int | None = None,
                   fn=train) -> tuple[float, int]:
    """Seconds (training only, as ``fn`` reports them) and steps per run of ``fn``: ``collect.train.train`` or
    ``collect.train_stacked.train_alone`` (what ``run_one`` uses for these runs)."""
    total, steps = 0.0, 0
    for cfg in cfgs:
        if epochs is not None:
            cfg = dataclasses.replace(cfg, stop=dataclasses.replace(cfg.stop, max_epochs=epochs))
        if eval_at_end:
            spe = -(-cfg.data.n_train // cfg.optim.batch_size)
            cfg = dataclasses.replace(cfg, stop=dataclasses.replace(cfg.stop, eval_every=cfg.stop.max_epochs * spe))
        torch.manual_seed(cfg.seed)
        ds = load_dataset(cfg.data, cfg.data_seed)
        model = build_model(cfg.model, ds.input_shape, ds.num_classes, cfg.seed).to(device)
        loss_fn = get_loss(cfg.loss)
        data = to_tensors(ds, device)
        sync(device)
        result = fn(cfg, model, data, loss_fn, lambda m: build_optimizer(cfg.optim, m, loss_fn), progress=False)
        sync(device)
        total += result.seconds
        steps = result.steps
    return total, steps


def stacked(cfgs: list, device: torch.device, eval_at_end: bool = False, epochs: int | None = None) -> float:
    if epochs is not None:
        cfgs = [dataclasses.replace(c, stop=dataclasses.replace(c.stop, max_epochs=epochs)) for c in cfgs]
    for cfg in cfgs:  # the data cache is warm, as in plain_loop
        load_dataset(cfg.data, cfg.data_seed)
    if eval_at_end:
        cfgs = [dataclasses.replace(c, stop=dataclasses.replace(c.stop, eval_every=10**9)) for c in cfgs]
    sync(device)
    start = time.perf_counter()
    train_stack(cfgs, device)
    sync(device)
    return time.perf_counter() - start


def bmm_rate(runs: int, batch: int, dims: list[int], device: torch.device, repeats: int) -> float:
    """GFLOP/s of the batched products of one stacked step (forward, weight and hidden-input gradients)."""
    hs = [torch.randn(runs, batch, d, device=device) for d in dims]
    ws = [torch.randn(runs, i, o, device=device) for i, o in zip(dims[:-1], dims[1:])]
    flops = 0
    for k, w in enumerate(ws):
        flops += 2 * 2 * runs * batch * w.shape[1] * w.shape[2] + (2 * runs * batch * w.shape[1] * w.shape[2] if k else 0)

    def one() -> None:
        for k, w in enumerate(ws):
            torch.bmm(hs[k], w)  # forward
            torch.bmm(hs[k].transpose(1, 2), hs[k + 1])  # weight gradient
            if k:
                torch.bmm(hs[k + 1], w.transpose(1, 2))  # input gradient

    one()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        one()
    sync(device)
    return flops * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=16)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds; every figure is the median over them")
    p.add_argument("--tiny", action="store_true", help="4 runs, 1 epoch, 200 points: checks that it runs")
    args = p.parse_args()
    if args.tiny:
        args.runs, args.epochs, args.n_train = 4, 1, 200
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfgs = configs(args)
    ds = load_dataset(cfgs[0].data, cfgs[0].data_seed)
    dims = [int(torch.as_tensor(ds.x_train[0]).numel()), args.width, args.width, ds.num_classes]
    flops_step = 2 * args.batch * (3 * sum(i * o for i, o in zip(dims[:-1], dims[1:])) - dims[0] * dims[1])

    warm = [dataclasses.replace(c, stop=dataclasses.replace(c.stop, max_epochs=1)) for c in cfgs[:2]]
    plain_loop(warm, device), flatlas_single(warm, device, False), stacked(warm, device)  # first-call costs
    flatlas_single(warm, device, False, fn=train_alone)
    times: dict[str, list[float]] = {k: [] for k in ("plain", "single", "single_end", "single_steps", "alone",
                                                     "alone_end", "alone_steps", "stack", "stack_end", "stack_steps",
                                                     "rate")}

    def marginal(full: float, one_epoch: float) -> float:
        return (full - one_epoch) * args.epochs / (args.epochs - 1) if args.epochs > 1 else math.nan

    steps = max(1, args.epochs * -(-args.n_train // args.batch))

    def single_pair() -> None:
        full = flatlas_single(cfgs, device, eval_at_end=True)[0]
        times["single_end"].append(full)
        times["single_steps"].append(marginal(full, flatlas_single(cfgs, device, True, epochs=1)[0]))

    def alone_pair() -> None:
        full = flatlas_single(cfgs, device, eval_at_end=True, fn=train_alone)[0]
        times["alone_end"].append(full)
        times["alone_steps"].append(marginal(full, flatlas_single(cfgs, device, True, epochs=1, fn=train_alone)[0]))

    def stack_pair() -> None:
        full = stacked(cfgs, device, eval_at_end=True)
        times["stack_end"].append(full)
        times["stack_steps"].append(marginal(full, stacked(cfgs, device, eval_at_end=True, epochs=1)))

    tasks = [
        lambda: times["plain"].append(plain_loop(cfgs, device)),
        lambda: times["single"].append(flatlas_single(cfgs, device, eval_at_end=False)[0]),
        single_pair,
        lambda: times["alone"].append(flatlas_single(cfgs, device, eval_at_end=False, fn=train_alone)[0]),
        alone_pair,
        lambda: times["stack"].append(stacked(cfgs, device)),
        stack_pair,
        lambda: times["rate"].append(bmm_rate(args.runs, args.batch, dims, device, repeats=max(5, steps // 4))),
    ]
    order = random.Random(0)
    for _ in range(args.repeats):  # interleaved rounds in a shuffled order: a slow spell or a position in the round
        order.shuffle(tasks)  # favours no row
        for task in tasks:
            task()
    (plain, single, single_end, single_steps, alone, alone_end, alone_steps, stack, stack_end, stack_steps,
     rate) = (statistics.median(times[k]) for k in times)
    total_flops = args.runs * steps * flops_step

    print(f"{args.runs} runs x {steps} steps, fcn {'-'.join(map(str, dims))}, batch {args.batch}, {args.dataset} "
          f"{args.n_train} points, {args.threads} threads, {device}; median of {args.repeats} interleaved rounds")
    print(f"{'path':30s} {'seconds':>8s} {'ms/step/run':>12s} {'GFLOP/s':>8s} {'vs plain':>9s} {'% bmm':>6s}")
    for name, secs in (("plain loop", plain), ("train() per-epoch eval", single), ("train() eval at end", single_end),
                       ("train() steps alone", single_steps),
                       ("train_alone() per-epoch eval", alone), ("train_alone() eval at end", alone_end),
                       ("train_alone() steps alone", alone_steps),
                       (f"stack of {args.runs} per-epoch eval", stack), (f"stack of {args.runs} eval at end", stack_end),
                       (f"stack of {args.runs} steps alone", stack_steps)):
        gflops = total_flops / secs / 1e9
        print(f"{name:30s} {secs:8.2f} {1e3 * secs / (args.runs * steps):12.3f} {gflops:8.1f} {plain / secs:9.2f} "
              f"{100 * gflops / rate:6.0f}")
    print(f"{'bmm rate (stack shapes)':30s} {'':8s} {'':12s} {rate:8.1f}")
    print("each round (seconds; bmm rate in GFLOP/s), to judge the machine's noise:")
    for key, values in times.items():
        print(f"  {key:12s} " + " ".join(f"{v:6.2f}" for v in values))


if __name__ == "__main__":
    main()
