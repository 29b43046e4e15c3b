"""The ``Pool`` every source returns, and ``labels_only`` for size checks that need no inputs."""

from __future__ import annotations

from dataclasses import dataclass

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


def labels_only(y: np.ndarray, y_test: np.ndarray | None, class_names: tuple[str, ...]) -> Pool:
    """A ``Pool`` holding labels only (inputs of width 0), enough to count what a split can draw."""
    def empty(labels: np.ndarray) -> np.ndarray:
        return np.zeros((len(labels), 0), dtype=np.uint8)

    return Pool(x=empty(y), y=y, class_names=class_names, x_test=None if y_test is None else empty(y_test), y_test=y_test)
