"""Per-run cost of the measures of Jiang et al.'s list, adaptive sharpness, optimization speed, heavy-tailed spectra
and the Fisher–Rao norm on the ``quick`` sweep's model: the median seconds of each entry over ``--runs``
configurations of the sweep (trained as the runner trains them, curves included), beside the value it returned.

    python tests/benchmarks/bench_new_measures.py                      # 8 configurations of the quick sweep
    python tests/benchmarks/bench_new_measures.py --runs 1 --scale smoke   # a check that it runs (seconds)

Runs with one torch thread unless ``--threads`` says otherwise; the load average is printed with the table, as the
machine may be shared. The entries and their options are ``ENTRIES`` (the ones proposed for the study sweep).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from collect.config import RunConfig  # noqa: E402
from collect.data import load_dataset  # noqa: E402
from collect.losses import get_loss  # noqa: E402
from collect.measures.context import MeasureContext  # noqa: E402
from collect.measures.registry import get_measure  # noqa: E402
from collect.models import build_model  # noqa: E402
from collect.optim import build_optimizer  # noqa: E402
from collect.runner import to_tensors  # noqa: E402
from collect.sweep import expand, find_sweep, load_spec  # noqa: E402
from collect.train import train  # noqa: E402

ENTRIES: list[tuple[str, dict]] = [
    ("jiang_norms", {}),
    ("pacbayes_bounds", {"n_samples": 500}),
    ("jiang_sharpness", {"n_samples": 500}),
    ("jiang_sharpness_mag", {"n_samples": 500}),
    ("adaptive_sharpness", {"norm": "linf"}),
    ("adaptive_sharpness", {"norm": "l2"}),
    ("average_sharpness", {}),
    ("optimization_speed", {}),
    ("grad_noise", {}),
    ("heavy_tail", {}),
    ("fisher_rao", {}),
]


def trained(cfg: RunConfig) -> tuple[MeasureContext, float]:
    """Train ``cfg`` as the runner does; the final model's measure context (with its curves) and the training seconds."""
    dataset = load_dataset(cfg.data, cfg.data_seed)
    data = to_tensors(dataset, torch.device("cpu"))
    model = build_model(cfg.model, dataset.input_shape, dataset.num_classes, cfg.seed)
    loss_fn = get_loss(cfg.loss)
    result = train(cfg, model, data, loss_fn, lambda m: build_optimizer(cfg.optim, m, loss_fn), progress=False)
    ctx = MeasureContext(
        model=result.model.eval(), config=cfg, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
        y_test=data.y_test, is_attack=data.is_attack, num_classes=dataset.num_classes, loss_fn=loss_fn,
        init_state=result.init_state, device=torch.device("cpu"), seed=cfg.seed, next_iterate=result.next_iterate,
        curves=result.curves,
    )
    return ctx, result.seconds


def label(name: str, options: dict) -> str:
    return name + (f" {options}" if options else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=8, help="configurations of the quick sweep (spread over its grid)")
    parser.add_argument("--scale", default=None, help="a scale of the quick sweep (e.g. smoke); default: its default")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = expand(load_spec(find_sweep("quick")), args.scale)
    step = max(1, len(runs) // args.runs)
    configs = [r.config for r in runs[::step][: args.runs]]
    seconds: dict[str, list[float]] = {label(n, o): [] for n, o in ENTRIES}
    values: dict[str, list[str]] = {k: [] for k in seconds}
    train_s = []
    for i, cfg in enumerate(configs):
        ctx, t = trained(cfg)
        train_s.append(t)
        print(f"run {i + 1}/{len(configs)}: trained in {t:.1f} s ({load()})", flush=True)
        for name, options in ENTRIES:
            m = get_measure(name)
            started = time.perf_counter()
            try:
                res = m.fn(ctx, **options)
                shown = ", ".join(f"{k}={v:.4g}" for k, v in res.values.items() if k in m.directions)
            except Exception as exc:  # a skip (e.g. a threshold never reached) is a result too
                shown = f"{type(exc).__name__}: {exc}"
            seconds[label(name, options)].append(time.perf_counter() - started)
            values[label(name, options)].append(shown)
    print(f"\nmedian per-run cost over {len(configs)} quick-sweep run(s), {args.threads} thread(s), {load()}; "
          f"median training {statistics.median(train_s):.2f} s")
    print(f"{'entry':58s} {'median s':>9s} {'max s':>8s}  last value")
    for key, s in seconds.items():
        print(f"{key:58s} {statistics.median(s):9.3f} {max(s):8.3f}  {values[key][-1][:90]}")


def load() -> str:
    return "load %.1f" % os.getloadavg()[0]


if __name__ == "__main__":
    main()
