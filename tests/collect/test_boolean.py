"""The n = 7 Boolean dataset of paper 002 section 5.1."""

from __future__ import annotations

import numpy as np
import pytest

from collect.boolean import boolean_inputs, boolean_target, load_boolean
from collect.config import DataConfig, SpecError
from collect.data import load_dataset


def test_inputs_enumerate_all_bit_strings_msb_first():
    x = boolean_inputs()
    assert x.shape == (128, 7) and x.dtype == np.float32
    assert len({tuple(r) for r in x}) == 128
    assert x[5].tolist() == [0, 0, 0, 0, 1, 0, 1]  # 5 = 0b0000101
    assert set(np.unique(boolean_inputs(signed=True))) == {-1.0, 1.0}


def test_targets_by_hand():
    parity, majority = boolean_target("parity"), boolean_target("majority")
    assert parity[0] == 0 and parity[1] == 1 and parity[3] == 0 and parity[127] == 1  # 127 has seven bits set
    assert majority[0b0001111] == 1 and majority[0b0000111] == 0
    custom = "1" + "0" * 127
    assert boolean_target(custom).tolist() == [1] + [0] * 127
    with pytest.raises(SpecError, match="boolean_target"):
        boolean_target("0101")


def test_split_is_disjoint_seeded_and_attack_labels_are_flipped():
    cfg = DataConfig(dataset="boolean", n_train=64, n_test=44, attack_size=20, boolean_target="majority", standardize=False)
    d = load_boolean(cfg, seed=3)
    assert d.x_train.shape == (84, 7) and d.x_test.shape == (44, 7) and d.input_shape == (7,) and d.num_classes == 2
    rows = {tuple(r) for r in np.concatenate([d.x_train, d.x_test])}
    assert len(rows) == 128  # S, A and E are disjoint and cover all inputs here
    assert d.is_attack.sum() == 20 and not d.is_attack[:64].any()
    truth = d.x_train.sum(1) >= 4
    assert (d.y_train_true == truth).all()
    assert (d.y_train[d.is_attack] == 1 - d.y_train_true[d.is_attack]).all()
    assert (d.y_train[~d.is_attack] == d.y_train_true[~d.is_attack]).all()
    assert (d.y_test == (d.x_test.sum(1) >= 4)).all()
    again = load_boolean(cfg, seed=3)
    assert (again.x_train == d.x_train).all()
    other = load_boolean(cfg, seed=4)
    assert not (other.x_train == d.x_train).all()
    # the test set does not depend on the attack size
    no_attack = load_boolean(DataConfig(dataset="boolean", n_train=64, n_test=44, boolean_target="majority", standardize=False), seed=3)
    assert (no_attack.x_test == d.x_test).all()


def test_errors_name_the_field():
    with pytest.raises(SpecError, match="data.n_test = 64"):
        load_boolean(DataConfig(dataset="boolean", n_train=64, n_test=1000), seed=0)
    with pytest.raises(SpecError, match="data.binary"):
        load_boolean(DataConfig(dataset="boolean", n_train=64, n_test=64, binary="low_high"), seed=0)


def test_load_dataset_dispatches_to_the_boolean_system():
    d = load_dataset(DataConfig(dataset="boolean", n_train=100, n_test=28), seed=0)
    assert d.name == "boolean" and d.x_train.shape == (100, 7)
    assert set(np.unique(d.x_train)) == {-1.0, 1.0}  # standardize = true (default) gives the ±1 encoding
