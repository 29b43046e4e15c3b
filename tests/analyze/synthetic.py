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


SMALL_AXES: dict[str, list[Any]] = {
    "hp.optimizer": ["sgd", "adam"],
    "hp.batch_size": [64, 512],
    "hp.dropout": [0.0, 0.25],
}
NULL_KINDS = ("noise", "flat", "additive")
PLANTED_KINDS = ("reversal", "simpson", "weakening", "reference_weakening")


def _small_grid(rng: np.random.Generator, n_seeds: int) -> dict[str, np.ndarray]:
    configs = list(itertools.product(*SMALL_AXES.values()))
    cols = {a: np.array([c[k] for c in configs for _ in range(n_seeds)], dtype=object) for k, a in enumerate(SMALL_AXES)}
    return cols


def _frame(cols: Mapping[str, np.ndarray], gap: np.ndarray, measures: Mapping[str, np.ndarray]) -> pl.DataFrame:
    n = gap.size
    data: dict[str, Any] = {"run_id": [f"run{i:04d}" for i in range(n)], "status": ["FINISHED"] * n}
    data |= {a: v.tolist() for a, v in cols.items()}
    data |= {m: v for m, v in measures.items()}
    data["gen.gap_acc"] = gap
    return pl.DataFrame(data)


def null_ledger(kind: str, seed: int, n_seeds: int = 10) -> pl.DataFrame:
    """A small ledger (2 × 2 × 2 grid of optimizer, batch size, dropout × ``n_seeds``) in which every group has
    the same measure–gap relationship, so no break flag is true:

    - ``noise``: gap and measures are independent noise (ρ = 0 in every group);
    - ``flat``: the gap does not depend on the hyperparameters; ``measure.planted`` = gap + noise (ρ ≈ 0.9 in
      every group);
    - ``additive``: the gap is a sum of per-axis effects plus noise and ``measure.planted`` = gap + noise: every
      level of an axis has the same within-level gap variance, hence the same ρ.
    ``measure.noise_0`` is independent noise in every kind.
    """
    rng = np.random.default_rng(seed)
    cols = _small_grid(rng, n_seeds)
    n = cols["hp.optimizer"].size
    gap = 0.08 + rng.normal(0, 0.01, n)
    if kind == "noise":
        planted = rng.normal(0, 1, n)
    elif kind in ("flat", "additive"):
        if kind == "additive":
            for a, values in SMALL_AXES.items():
                effect = dict(zip(values, rng.normal(0, 0.02, len(values))))
                gap = gap + np.array([effect[v] for v in cols[a]])
        planted = gap + rng.normal(0, 0.005, n)
    else:
        raise ValueError(f"kind must be one of {NULL_KINDS}, not {kind!r}")
    return _frame(cols, gap, {"measure.planted": planted, "measure.noise_0": rng.normal(0, 1, n)})


def planted_ledger(kind: str, seed: int, n_seeds: int = 10) -> tuple[pl.DataFrame, tuple[str, str, str]]:
    """A small ledger with one planted break and the (flag, axis, group) that must find it (measure.planted):

    - ``reversal``: within optimizer = adam the measure is the gap mirrored about its mean (ρ ≈ −0.9; +0.9 in sgd);
    - ``simpson``: within each dropout level the measure falls with the gap (ρ ≈ −0.9), but the levels' means rise
      together, so the pooled ρ is positive;
    - ``weakening``: within batch_size = 512 the measure's noise is 8× the gap's spread (ρ ≈ 0.1; 0.9 at 64);
    - ``reference_weakening``: the same inside batch_size = 64, the level the flags' reference heuristic picks.
    """
    rng = np.random.default_rng(seed)
    cols = _small_grid(rng, n_seeds)
    n = cols["hp.optimizer"].size
    gap = 0.08 + rng.normal(0, 0.01, n)
    noise = rng.normal(0, 0.005, n)
    if kind == "reversal":
        adam = cols["hp.optimizer"] == "adam"
        planted = np.where(adam, 2 * gap[adam].mean() - gap, gap) + noise
        expect = ("sign_reversal", "hp.optimizer", "adam")
    elif kind == "simpson":
        level = (cols["hp.dropout"] == 0.25).astype(float)
        gap = gap + 0.05 * level
        planted = -gap + 0.2 * level + noise  # falls within a level, but the dropout level lifts both
        expect = ("simpson_reversal", "hp.dropout", "(within groups)")
    elif kind == "weakening":
        big = cols["hp.batch_size"] == 512
        planted = gap + np.where(big, rng.normal(0, 0.08, n), noise)
        expect = ("weakening", "hp.batch_size", "512")
    elif kind == "reference_weakening":
        small = cols["hp.batch_size"] == 64
        planted = gap + np.where(small, rng.normal(0, 0.08, n), noise)
        expect = ("weakening", "hp.batch_size", "64")
    else:
        raise ValueError(f"kind must be one of {PLANTED_KINDS}, not {kind!r}")
    return _frame(cols, gap, {"measure.planted": planted, "measure.noise_0": rng.normal(0, 1, n)}), expect
