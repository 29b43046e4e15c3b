"""The ``Pool`` every source returns, and the dispatch from a ``data.dataset`` string to its source."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, eq=False)
class Pool:
    """Examples a dataset is drawn from, kept in their stored dtype (uint8 images stay uint8 until drawn).

    ``x_test``/``y_test`` are the official test split, or None for single-pool sources (all of S, A and E are then
    drawn from ``x``). Inputs as trained on are ``x.astype(float32) * scale``.
    """

    x: np.ndarray  # (n, *input_shape)
    y: np.ndarray  # int64 (n,)
    class_names: tuple[str, ...]
    scale: float = 1.0
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_pool(dataset: str, cache_dir: Path) -> Pool:
    """Read or generate the pool named by ``data.dataset`` (everything except ``boolean``)."""
    # Imports are local so that a source's dependencies load only when it is used.
    if dataset == "mnist":
        from collect.datasets.sources import mnist_pool

        return mnist_pool(cache_dir)
    if dataset == "mnist1d":
        from collect.datasets.sources import mnist1d_pool

        return mnist1d_pool(cache_dir)
    if dataset == "digits":
        from collect.datasets.sources import digits_pool

        return digits_pool()
    if dataset.startswith("idx:"):
        from collect.datasets.idx import idx_pool

        return idx_pool(_folder(dataset, "idx:"))
    if dataset.startswith("cifar10:"):
        from collect.datasets.cifar import cifar10_pool

        return cifar10_pool(_folder(dataset, "cifar10:"))
    raise ValueError(
        f"data.dataset = {dataset!r} is not a known dataset; use mnist, mnist1d, digits, boolean, "
        "'idx:<folder>' or 'cifar10:<folder>'"
    )


def load_labels(dataset: str, cache_dir: Path) -> Pool:
    """The pool's labels and class names with zero-width inputs, for size checks before training: local folders are
    read for their labels only (IDX label files, CIFAR batches' labels); built-in pools are loaded (they are small
    and cached)."""
    if dataset.startswith("idx:"):
        from collect.datasets.idx import idx_labels

        return idx_labels(_folder(dataset, "idx:"))
    if dataset.startswith("cifar10:"):
        from collect.datasets.cifar import cifar10_labels

        return cifar10_labels(_folder(dataset, "cifar10:"))
    pool = load_pool(dataset, cache_dir)
    return labels_only(pool.y, pool.y_test, pool.class_names)


def labels_only(y: np.ndarray, y_test: np.ndarray | None, class_names: tuple[str, ...]) -> Pool:
    """A ``Pool`` holding labels only (inputs of width 0), enough to count what a split can draw."""
    def empty(labels: np.ndarray) -> np.ndarray:
        return np.zeros((len(labels), 0), dtype=np.uint8)

    return Pool(x=empty(y), y=y, class_names=class_names, x_test=None if y_test is None else empty(y_test), y_test=y_test)


def _folder(dataset: str, prefix: str) -> Path:
    raw = dataset[len(prefix):].strip()
    if not raw:
        raise ValueError(f"data.dataset = {dataset!r} names no folder; write '{prefix}<folder>', e.g. '{prefix}data/raw'")
    return Path(raw).expanduser()
