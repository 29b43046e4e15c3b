"""The arrays one run trains and is tested on (``Dataset``), shared by every loader of a data source.

A module of its own so that the loaders (``collect.data`` for the pooled sources, ``collect.boolean`` for the Boolean
system of paper 002) return one type without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Dataset:
    """One run's data. Image data keeps its image view (C, H, W); models flatten it themselves when needed."""

    name: str
    x_train: np.ndarray  # float32 (n_train + attack_size, *input_shape): the S points first, then the A points
    y_train: np.ndarray  # int64 labels as trained on (attack points carry their wrong labels)
    y_train_true: np.ndarray  # int64 true labels (equal to y_train except on attack points)
    is_attack: np.ndarray  # bool, True for the A points
    x_test: np.ndarray  # float32 (n_test, *input_shape)
    y_test: np.ndarray  # int64
    num_classes: int  # 2 after binary relabelling
    input_shape: tuple[int, ...]  # (C, H, W) for images, (L,) for mnist1d / boolean
    class_names: tuple[str, ...]
