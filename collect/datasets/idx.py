"""MNIST / Fashion-MNIST in the IDX format (LeCun et al.), gzipped or raw, parsed by hand.

An IDX file is: two zero bytes, a type code, the number of dimensions d, then d big-endian uint32 sizes, then the
values in big-endian C order.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np

from collect.datasets.pool import Pool, labels_only
from collect.datasets.sources import DIGIT_NAMES

IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# (split, kind) -> file stems; both the official names and the dotted variant some mirrors use are accepted.
IDX_STEMS = {
    ("train", "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzip detected from its first bytes) into a native-endian array of its stored shape."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (expected magic bytes 00 00 <type> <ndim>, got {raw[:4].hex()})")
    dtype, ndim = IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header declares {ndim} dimensions but the file ends after {len(raw)} bytes")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX header declares shape {dims} ({expected} bytes) but the file has {len(raw)} bytes")
    values = np.frombuffer(raw, dtype=dtype, count=math.prod(dims), offset=header).reshape(dims)
    return values.astype(dtype.newbyteorder("="))


def find_idx_file(folder: Path, split: str, kind: str) -> Path:
    """The IDX file for (split, kind) in ``folder``, raw or ``.gz``; a clear error lists the accepted names."""
    candidates = [folder / (stem + ext) for stem in IDX_STEMS[(split, kind)] for ext in ("", ".gz")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    names = ", ".join(c.name for c in candidates)
    raise FileNotFoundError(f"data.dataset: no {split} {kind} IDX file in {folder}; expected one of {names}")


def _checked_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise FileNotFoundError(
            f"data.dataset: IDX folder {folder} does not exist; it must hold train-images-idx3-ubyte, "
            "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (raw or .gz)"
        )
    return folder


def idx_pool(folder: Path) -> Pool:
    """Train pool from the ``train-*`` files, test pool from ``t10k-*``; images as (1, H, W).

    Class names are Fashion-MNIST's when the folder's path mentions "fashion", else the digits 0-9.
    """
    folder = _checked_folder(Path(folder))
    split_arrays = {}
    for split in ("train", "test"):
        images_path, labels_path = find_idx_file(folder, split, "images"), find_idx_file(folder, split, "labels")
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3:
            raise ValueError(f"{images_path}: expected images of shape (n, height, width), got {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(
                f"{labels_path}: expected {len(images)} labels to match {images_path.name}, got shape {labels.shape}"
            )
        split_arrays[split] = (images[:, None], labels.astype(np.int64))
    (x, y), (x_test, y_test) = split_arrays["train"], split_arrays["test"]
    if x.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{folder}: train images {x.shape[1:]} and test images {x_test.shape[1:]} differ in shape")
    names = _class_names(folder, y, y_test)
    scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
    return Pool(x=x, y=y, class_names=names, scale=scale, x_test=x_test, y_test=y_test)


def idx_labels(folder: Path) -> Pool:
    """The labels of ``idx_pool(folder)``, read from the label files only (size checks before training)."""
    folder = _checked_folder(Path(folder))
    y, y_test = (read_idx(find_idx_file(folder, split, "labels")).astype(np.int64).ravel() for split in ("train", "test"))
    return labels_only(y, y_test, _class_names(folder, y, y_test))


def _class_names(folder: Path, y: np.ndarray, y_test: np.ndarray) -> tuple[str, ...]:
    if min(y.min(initial=0), y_test.min(initial=0)) < 0 or max(y.max(initial=0), y_test.max(initial=0)) > 9:
        raise ValueError(f"{folder}: IDX labels must lie in 0..9 (MNIST / Fashion-MNIST classes)")
    return FASHION_NAMES if "fashion" in str(folder).lower() else DIGIT_NAMES
