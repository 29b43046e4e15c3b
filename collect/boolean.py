"""The n = 7 Boolean system of paper 002 (Zhang et al., section 5.1; Valle-Pérez et al. 2018): all 2^7 = 128 inputs.

Input i is the 7-bit binary expansion of i, most significant bit first, as 0/1 (the paper's convention) or, with
``data.standardize = true``, as ±1 (which is exactly what per-bit standardisation over all 128 inputs gives).
The target is ``data.boolean_target``: "parity" (XOR of the bits), "majority" (at least 4 of the 7 bits set), or a
128-character 0/1 string whose character i is the label of input i. S (``n_train``), E (``n_test``) and the attack
set A (``attack_size``, labels flipped) are disjoint subsets drawn with the seed, so n_train + n_test + attack_size
may not exceed 128; with n_test = 128 − n_train, E is the rest of the inputs.
"""

from __future__ import annotations

import numpy as np

from collect.config import DataConfig, SpecError
from collect.run_data import Dataset

N_BITS = 7
N_INPUTS = 2**N_BITS
TARGETS = ("parity", "majority")


def boolean_inputs(signed: bool = False) -> np.ndarray:
    """(128, 7) float32: row i is the binary expansion of i, MSB first, as 0/1 (or ±1 when ``signed``)."""
    bits = (np.arange(N_INPUTS)[:, None] >> np.arange(N_BITS - 1, -1, -1)) & 1
    return (2 * bits - 1 if signed else bits).astype(np.float32)


def boolean_target(target: str) -> np.ndarray:
    """(128,) int64 labels of the named target function (see module docstring)."""
    bits = boolean_inputs().astype(np.int64)
    if target == "parity":
        return bits.sum(1) % 2
    if target == "majority":
        return (bits.sum(1) > N_BITS // 2).astype(np.int64)
    if len(target) == N_INPUTS and set(target) <= {"0", "1"}:
        return np.array([int(c) for c in target], dtype=np.int64)
    raise SpecError(
        f"data.boolean_target = {target[:40]!r}{'...' if len(target) > 40 else ''}: use 'parity', 'majority' or a "
        f"string of {N_INPUTS} characters 0/1 (character i is the label of input i, bits of i MSB first)"
    )


def load_boolean(cfg: DataConfig, seed: int) -> Dataset:
    """S, A and E for the Boolean system with the data seed ``seed`` (same cfg and seed: identical arrays)."""
    if cfg.binary is not None:
        raise SpecError(f"data.binary = {cfg.binary!r}: the boolean dataset is already binary; remove data.binary")
    n_s, n_e, n_a = cfg.n_train, cfg.n_test, cfg.attack_size
    if n_s + n_e + n_a > N_INPUTS:
        raise SpecError(
            f"data: n_train + n_test + attack_size = {n_s} + {n_e} + {n_a} = {n_s + n_e + n_a} exceeds the "
            f"{N_INPUTS} inputs of the boolean dataset; e.g. set data.n_test = {max(N_INPUTS - n_s - n_a, 0)}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed = {seed!r}: the data seed must be a non-negative integer")
    x = boolean_inputs(signed=cfg.standardize)
    y = boolean_target(cfg.boolean_target)
    perm = np.random.default_rng(int(seed)).permutation(N_INPUTS)
    train, test, attack = perm[:n_s], perm[n_s : n_s + n_e], perm[n_s + n_e : n_s + n_e + n_a]
    rows = np.concatenate([train, attack])
    y_train_true = y[rows]
    y_train = np.concatenate([y[train], 1 - y[attack]])
    return Dataset(
        name="boolean",
        x_train=np.ascontiguousarray(x[rows]),
        y_train=y_train.astype(np.int64),
        y_train_true=y_train_true.astype(np.int64),
        is_attack=np.arange(len(rows)) >= n_s,
        x_test=np.ascontiguousarray(x[test]),
        y_test=y[test].astype(np.int64),
        num_classes=2,
        input_shape=(N_BITS,),
        class_names=("0", "1"),
    )
