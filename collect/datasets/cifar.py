"""CIFAR-10 from the python pickle batches (``cifar-10-batches-py``), read with a restricted unpickler.

The batches are pickled dicts of numpy arrays; unpickling a file can run arbitrary code, so only the globals
that numpy arrays need are allowed (the "Restricting Globals" recipe of the ``pickle`` documentation).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from collect.datasets.pool import Pool, labels_only

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
EXPECTED = ", ".join((*TRAIN_BATCHES, TEST_BATCH, META))

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),  # pickles written by numpy < 2 (the official files)
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),  # pickle protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes under pickle protocol 2
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> dict[str, Any]:
    """One pickled batch as a dict with str keys (the official files use bytes keys under Python 2 pickles)."""
    with open(path, "rb") as handle:
        loaded = _ArrayUnpickler(handle, encoding="bytes").load()
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(loaded).__name__}")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in loaded.items()}


def find_cifar_folder(folder: Path) -> Path:
    """``folder`` itself if it holds the batches, else its ``cifar-10-batches-py`` child."""
    for candidate in (folder, folder / "cifar-10-batches-py"):
        if (candidate / TRAIN_BATCHES[0]).is_file():
            return candidate
    raise FileNotFoundError(
        f"data.dataset: no CIFAR-10 batches in {folder} or {folder / 'cifar-10-batches-py'}; "
        f"expected the python-version files {EXPECTED}"
    )


def _images_and_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = read_cifar_batch(path)
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: a CIFAR batch needs 'data' and 'labels' entries, found {sorted(batch)}")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(f"{path}: expected data (n, 3072) and n labels, got {data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def cifar10_pool(folder: Path) -> Pool:
    """Train pool from ``data_batch_1..5``, test pool from ``test_batch``; images (3, 32, 32) uint8."""
    root = _checked_root(folder)
    train = [_images_and_labels(root / name) for name in TRAIN_BATCHES]
    x_test, y_test = _images_and_labels(root / TEST_BATCH)
    y = np.concatenate([labels for _, labels in train])
    names = _class_names(root, y, y_test)
    return Pool(
        x=np.concatenate([images for images, _ in train]),
        y=y,
        class_names=names,
        scale=1.0 / 255.0,
        x_test=x_test,
        y_test=y_test,
    )


def cifar10_labels(folder: Path) -> Pool:
    """The labels of ``cifar10_pool(folder)`` without its images (size checks before training)."""
    root = _checked_root(folder)

    def labels(name: str) -> np.ndarray:
        batch = read_cifar_batch(root / name)
        if "labels" not in batch:
            raise ValueError(f"{root / name}: a CIFAR batch needs a 'labels' entry, found {sorted(batch)}")
        return np.asarray(batch["labels"], dtype=np.int64)

    y, y_test = np.concatenate([labels(name) for name in TRAIN_BATCHES]), labels(TEST_BATCH)
    return labels_only(y, y_test, _class_names(root, y, y_test))


def _checked_root(folder: Path) -> Path:
    root = find_cifar_folder(Path(folder))
    missing = [name for name in (*TRAIN_BATCHES, TEST_BATCH) if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(f"data.dataset: {root} lacks {', '.join(missing)}; expected {EXPECTED}")
    return root


def _class_names(root: Path, y: np.ndarray, y_test: np.ndarray) -> tuple[str, ...]:
    names = CIFAR10_NAMES
    if (root / META).is_file():
        raw_names = read_cifar_batch(root / META).get("label_names")
        if raw_names is not None:
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in raw_names)
    if min(y.min(), y_test.min()) < 0 or max(y.max(), y_test.max()) >= len(names):
        raise ValueError(f"{root}: labels must lie in 0..{len(names) - 1} (one per name in {META})")
    return names
