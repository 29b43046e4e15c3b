"""Synthetic ledgers with a planted measure–generalization relationship and, optionally, one planted break.

The generalization gap of a run is a sum of per-level effects of the hyperparameter axes plus seed noise.
``measure.planted`` tracks the gap (Spearman ≈ 0.9 everywhere); inside the break group it is mirrored about the
group's mean gap (``break_kind="reversal"``: same distribution, opposite relationship), or it shifts while the
gap does not (``"decoupling"``). ``measure.noise_*`` are independent of everything. Other targets are derived so
that train − test = gap. Used by the tests and by ``tests/benchmarks/bench_stats.py``.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl

DEFAULT_AXES: dict[str, list[Any]] = {
    "hp.optimizer": ["sgd", "adam"],
    "hp.batch_size": [64, 512],
    "hp.lr": [0.01, 0.05, 0.1],
    "hp.dropout": [0.0, 0.25],
}


def synthetic_ledger(
    *,
    axes: Mapping[str, Sequence[Any]] | None = None,
    n_seeds: int = 5,
    n_noise: int = 2,
    seed: int = 0,
    break_group: tuple[str, Any] | None = ("hp.optimizer", "adam"),
    break_kind: str = "reversal",
    effect_axes: Sequence[str] | None = None,
    noise_sd: float = 0.004,
    n_failed: int = 0,
    n_test: int | None = 10_000,
) -> pl.DataFrame:
    """A full grid over ``axes`` × ``n_seeds`` seeds (one FINISHED run each) plus ``n_failed`` FAILED runs.

    ``effect_axes`` are the axes that move the gap (default: all but the break axis, so that the break group's
    generalization does not move — a reversal is then the only break).
    """
    axes = dict(DEFAULT_AXES if axes is None else axes)
    rng = np.random.default_rng(seed)
    names = list(axes)
    if effect_axes is None:
        effect_axes = [a for a in names if break_group is None or a != break_group[0]]
    effects = {a: dict(zip(axes[a], rng.normal(0, 0.02, len(axes[a])))) for a in effect_axes}
    grid = list(itertools.product(*(axes[a] for a in names)))
    rows = len(grid) * n_seeds
    cols: dict[str, list[Any]] = {a: [] for a in names}
    seeds: list[int] = []
    for config in grid:
        for s in range(n_seeds):
            for a, v in zip(names, config):
                cols[a].append(v)
            seeds.append(s)
    gap = 0.08 + rng.normal(0, noise_sd, rows)
    for a in effect_axes:
        gap = gap + np.array([effects[a][v] for v in cols[a]])
    planted = gap + rng.normal(0, noise_sd * 0.5, rows)
    if break_group is not None:
        axis, value = break_group
        inside = np.array([v == value for v in cols[axis]])
        if break_kind == "reversal":
            planted[inside] = 2 * gap[inside].mean() - gap[inside] + rng.normal(0, noise_sd * 0.5, inside.sum())
        elif break_kind == "decoupling":
            planted[inside] = planted[inside] + 10 * gap.std()
        else:
            raise ValueError(f"break_kind must be 'reversal' or 'decoupling', not {break_kind!r}")
    test_acc = 0.85 - 0.5 * (gap - 0.08) + rng.normal(0, noise_sd, rows)
    data: dict[str, Any] = {
        "run_id": [f"run{i:06d}" for i in range(rows)],
        "experiment": ["synthetic"] * rows,
        "seed": seeds,
        "status": ["FINISHED"] * rows,
        **cols,
        "measure.planted": planted,
        **{f"measure.noise_{k}": rng.normal(0, 1, rows) for k in range(n_noise)},
        "gen.test_acc": test_acc,
        "gen.train_acc": test_acc + gap,
        "gen.gap_acc": gap,
        "gen.test_loss": 0.4 + 2 * gap + rng.normal(0, noise_sd, rows),
        "gen.train_loss": np.full(rows, 0.05) + rng.normal(0, noise_sd * 0.1, rows),
    }
    if n_test is not None:
        data["hp.n_test"] = [n_test] * rows
    frame = pl.DataFrame(data)
    frame = frame.with_columns((pl.col("gen.test_loss") - pl.col("gen.train_loss")).alias("gen.gap_loss"))
    if n_failed:
        failed = frame.head(n_failed).with_columns(
            pl.lit("FAILED").alias("status"),
            pl.Series("run_id", [f"failed{i}" for i in range(n_failed)]),
            pl.lit(1e9).alias("measure.planted"),  # garbage that must never reach a statistic
        )
        frame = pl.concat([frame, failed])
    return frame


def benchmark_ledger(n_runs: int = 10_000, n_measures: int = 30, seed: int = 0) -> pl.DataFrame:
    """10,000 runs × 30 measures × 6 hyperparameter axes (2,000 configurations × 5 seeds) for the benchmark."""
    axes = {
        "hp.a": [0, 1, 2, 3, 4],
        "hp.b": [0, 1, 2, 3, 4],
        "hp.c": [0, 1, 2, 3, 4],
        "hp.d": [0, 1, 2, 3],
        "hp.e": ["x", "y"],
        "hp.f": [False, True],
    }
    n_configs = int(np.prod([len(v) for v in axes.values()]))
    frame = synthetic_ledger(
        axes=axes, n_seeds=max(1, n_runs // n_configs), n_noise=n_measures - 1, seed=seed,
        break_group=("hp.e", "y"), effect_axes=["hp.a", "hp.b", "hp.c", "hp.d", "hp.f"],
    )
    return frame.head(n_runs)
