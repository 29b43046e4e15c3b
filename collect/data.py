"""Training, attack and test sets for one run: ``load_dataset(cfg, seed) -> Dataset``.

Steps, in order: read the source pool (``collect.datasets``), relabel it for binary tasks, draw the disjoint sets
S (training), E (test) and A (attack) with the seed, give every attack point a wrong label, scale pixels to
[0, 1], and optionally standardise each feature with statistics of S.

The attack set is the trick of Wu et al. (2017) used in "Why Flatness Correlates With Generalization for Deep
Neural Networks" (Zhang et al., section 5): training on S ∪ A, where A carries wrong labels, yields models with zero
training error on S but worse test error the larger |A| is.

Draw order makes interventions comparable: for a fixed seed, S and E do not depend on ``attack_size``, the attack
sets of different sizes are nested, and an attack point's wrong label depends only on the seed and which example
it is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from collect.config import DataConfig, SpecError
from collect.datasets import Pool, load_labels, load_pool
from collect.run_data import Dataset  # noqa: F401 - the type load_dataset returns, importable from here

_CHUNK = 4096  # rows standardised at a time


@dataclass(frozen=True, eq=False)
class Split:
    """Pool row indices of S and A (in the train pool) and of E (in the test pool, or the same pool if single)."""

    train: np.ndarray
    attack: np.ndarray
    test: np.ndarray


def load_dataset(cfg: DataConfig, seed: int, cache_dir: Path = Path("data/cache")) -> Dataset:
    """Build S ∪ A and E for ``cfg`` with the data seed ``seed`` (same cfg and seed: identical arrays)."""
    cfg.validate("data")
    if cfg.dataset == "boolean":
        from collect.boolean import load_boolean  # another module owns the Boolean system of paper 002

        return load_boolean(cfg, seed)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed = {seed!r}: the data seed must be a non-negative integer (data.data_seed or the run seed)")

    pool = relabel(load_pool(cfg.dataset, Path(cache_dir)), cfg.binary)
    draw_rng, label_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(2))
    split = draw_split(pool, cfg, draw_rng)
    wrong = wrong_labels(pool.y, pool.num_classes, label_rng)

    rows = np.concatenate([split.train, split.attack])
    x_test_pool = pool.x if pool.x_test is None else pool.x_test
    y_test_pool = pool.y if pool.y_test is None else pool.y_test
    x_train = _as_inputs(pool.x[rows], pool.scale)
    x_test = _as_inputs(x_test_pool[split.test], pool.scale)
    if cfg.standardize:
        x_train, x_test = standardize(x_train, x_test, n_fit=len(split.train))

    y_train_true = pool.y[rows].astype(np.int64)
    y_train = np.concatenate([pool.y[split.train], wrong[split.attack]]).astype(np.int64)
    is_attack = np.zeros(len(rows), dtype=bool)
    is_attack[len(split.train):] = True
    return Dataset(
        name=cfg.dataset,
        x_train=x_train,
        y_train=y_train,
        y_train_true=y_train_true,
        is_attack=is_attack,
        x_test=x_test,
        y_test=y_test_pool[split.test].astype(np.int64),
        num_classes=pool.num_classes,
        input_shape=pool.input_shape,
        class_names=pool.class_names,
    )


def relabel(pool: Pool, binary: tuple[int, ...] | list[int] | str | None) -> Pool:
    """Binary tasks (paper 002 uses MNIST 0-4 vs 5-9): "low_high" maps classes 0-4 to 0 and 5-9 to 1;
    a pair (a, b) keeps only classes a and b and maps a to 0, b to 1. Done before drawing so sizes are exact."""
    if binary is None:
        return pool
    names = pool.class_names
    if binary == "low_high":
        if pool.num_classes != 10:
            raise SpecError(f"data.binary = 'low_high' needs 10 classes, this dataset has {pool.num_classes}; give a pair")
        new_names = ("/".join(names[:5]), "/".join(names[5:]))
        return replace(
            pool,
            y=(pool.y >= 5).astype(np.int64),
            y_test=None if pool.y_test is None else (pool.y_test >= 5).astype(np.int64),
            class_names=new_names,
        )
    if isinstance(binary, str) or len(binary) != 2:
        raise SpecError(f"data.binary = {binary!r}: use 'low_high' or a pair of class ids like [3, 5]")
    a, b = binary
    valid = all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c < pool.num_classes for c in (a, b))
    if not valid or a == b:
        raise SpecError(
            f"data.binary = {list(binary)}: give two different class ids in 0..{pool.num_classes - 1} "
            f"({', '.join(f'{i}={n}' for i, n in enumerate(names))})"
        )

    def keep(x: np.ndarray | None, y: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        if x is None or y is None:
            return x, y
        mask = (y == a) | (y == b)
        return x[mask], (y[mask] == b).astype(np.int64)

    x, y = keep(pool.x, pool.y)
    x_test, y_test = keep(pool.x_test, pool.y_test)
    return replace(pool, x=x, y=y, x_test=x_test, y_test=y_test, class_names=(names[a], names[b]))


def draw_split(pool: Pool, cfg: DataConfig, rng: np.random.Generator) -> Split:
    """Disjoint S, E, A. Single pool: one permutation, sliced S | E | A. Official split: S | A from the train pool,
    E from the test pool. Either way S and E do not depend on ``attack_size``."""
    n_s, n_e, n_a = cfg.n_train, cfg.n_test, cfg.attack_size
    check_split_sizes(cfg, len(pool.y), None if pool.y_test is None else len(pool.y_test))
    if pool.x_test is None:
        perm = rng.permutation(len(pool.y))
        return Split(train=perm[:n_s], test=perm[n_s : n_s + n_e], attack=perm[n_s + n_e : n_s + n_e + n_a])
    perm = rng.permutation(len(pool.y))
    return Split(train=perm[:n_s], attack=perm[n_s : n_s + n_a], test=rng.permutation(len(pool.y_test))[:n_e])


def check_split_sizes(cfg: DataConfig, n_pool: int, n_test_pool: int | None) -> None:
    """SpecError when S, E and A do not fit: n_train + n_test + attack_size <= n_pool for a single pool, else
    n_train + attack_size <= n_pool and n_test <= n_test_pool (the official test split)."""
    n_s, n_e, n_a = cfg.n_train, cfg.n_test, cfg.attack_size
    relabelled = f" after data.binary = {cfg.binary!r}" if cfg.binary is not None else ""
    if n_test_pool is None:
        if n_s + n_e + n_a > n_pool:
            raise SpecError(
                f"data: n_train + n_test + attack_size = {n_s} + {n_e} + {n_a} = {n_s + n_e + n_a} exceeds the "
                f"{n_pool} examples of {cfg.dataset}{relabelled}; lower data.n_train, data.n_test or data.attack_size"
            )
        return
    if n_s + n_a > n_pool:
        raise SpecError(
            f"data: n_train + attack_size = {n_s} + {n_a} = {n_s + n_a} exceeds the {n_pool} training examples of "
            f"{cfg.dataset}{relabelled}; lower data.n_train or data.attack_size"
        )
    if n_e > n_test_pool:
        raise SpecError(
            f"data.n_test = {n_e} exceeds the {n_test_pool} test examples of {cfg.dataset}{relabelled}; "
            "lower data.n_test"
        )


def check_sizes(cfg: DataConfig, cache_dir: Path = Path("data/cache")) -> int:
    """Check before training that ``cfg``'s S, E and A fit in its dataset (after binary relabelling), reading only
    the labels of local folders; returns the number of classes the runs will see. Raises SpecError otherwise."""
    cfg.validate("data")
    if cfg.dataset == "boolean":
        from collect.boolean import N_INPUTS

        if cfg.binary is not None:
            raise SpecError(f"data.binary = {cfg.binary!r}: the boolean dataset is already binary; remove data.binary")
        check_split_sizes(cfg, N_INPUTS, None)
        return 2
    try:
        pool = relabel(load_labels(cfg.dataset, Path(cache_dir)), cfg.binary)
    except (OSError, ValueError) as exc:  # a missing or malformed local folder
        raise SpecError(str(exc)) from None
    check_split_sizes(cfg, len(pool.y), None if pool.y_test is None else len(pool.y_test))
    return pool.num_classes


def wrong_labels(y: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """For every pool example, a label drawn uniformly among the classes other than its own (binary: flipped).

    Drawn for the whole pool so that an example's attack label depends on the seed only, not on |A|.
    """
    offsets = rng.integers(1, num_classes, size=len(y))  # uniform on 1..C-1, so never the true class
    return (y + offsets) % num_classes


def standardize(x_train: np.ndarray, x_test: np.ndarray, n_fit: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (x - mean) / std with mean and std of the first ``n_fit`` training rows (S, not A or E).

    Features constant on S keep scale 1 (sklearn's zero-variance guard) instead of dividing by zero.
    """
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train[:n_fit].reshape(n_fit, -1).astype(np.float64))

    def apply(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1)
        out = np.empty(flat.shape, dtype=np.float32)
        for start in range(0, len(flat), _CHUNK):  # float64 arithmetic, chunked to bound memory on CIFAR-sized sets
            out[start : start + _CHUNK] = scaler.transform(flat[start : start + _CHUNK].astype(np.float64))
        return out.reshape(x.shape)

    return apply(x_train), apply(x_test)


def _as_inputs(x: np.ndarray, scale: float) -> np.ndarray:
    """Stored values (uint8 pixels, ...) to float32 inputs, e.g. pixel / 255 in [0, 1]."""
    out = x.astype(np.float32)
    out *= np.float32(scale)
    return np.ascontiguousarray(out)
