"""The dispatch from a ``data.dataset`` string to the source that reads or generates its ``Pool``.

It sits above the sources (``sources``, ``idx``, ``cifar``), which only know ``collect.datasets.pool``.
"""

from __future__ import annotations

from pathlib import Path

from collect.datasets.pool import Pool, labels_only


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


def _folder(dataset: str, prefix: str) -> Path:
    raw = dataset[len(prefix):].strip()
    if not raw:
        raise ValueError(f"data.dataset = {dataset!r} names no folder; write '{prefix}<folder>', e.g. '{prefix}data/raw'")
    return Path(raw).expanduser()
