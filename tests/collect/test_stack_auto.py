"""``--stack auto``: the cost model of ``collect.stack_cost`` decides on plans (nothing is trained here)."""

from __future__ import annotations

import pytest

from collect.stack_cost import StackCostModel, choose, step_flop, steps_of, why_not
from collect.sweep import expand, find_sweep, load_spec, parse_spec


def plan(dataset: str = "mnist1d", width: int = 64, depth: int = 1, batch: int = 32, n_train: int = 1000,
         epochs: int = 100, lrs=(0.01, 0.02, 0.03, 0.05), seeds=(0, 1, 2, 3), arch: str = "fcn", **extra):
    spec = {
        "name": "auto", "seeds": list(seeds), "measures": ["margins"],
        "base": {"data": {"dataset": dataset, "n_train": n_train, "n_test": 100},
                 "model": {"arch": arch, "width": width, "depth": depth},
                 "optim": {"lr": 0.1, "batch_size": batch, **extra}, "stop": {"max_epochs": epochs}},
        "grid": {"optim.lr": list(lrs)},
    }
    return expand(parse_spec(spec, "auto.toml"))


def test_the_model_reproduces_the_figures_it_was_calibrated_on_and_the_one_it_was_not():
    """docs/performance.md: a 16-run stack of MNIST-1D 40-64-10 MLPs (batch 32) trained 2.6x faster (the calibration
    point); the quick model (784-128-128-10, batch 32) 0.99x (not used to fit F_o: a check, within 0.1)."""
    model = StackCostModel()
    small = step_flop(plan()[0].config)
    quick = step_flop(plan("mnist", width=128, depth=2)[0].config)
    assert small == pytest.approx(0.45e6, rel=0.01) and quick == pytest.approx(16.2e6, rel=0.01)
    assert model.speedup(small, 16) == pytest.approx(2.6, abs=0.05)
    assert model.speedup(quick, 16) == pytest.approx(0.99, abs=0.1)
    assert model.speedup(small, 1) == pytest.approx(1.0)  # one run: nothing to share


def test_step_flop_counts_the_weights_of_the_built_network():
    """Σ d_i d_{i+1} of the formula is the number of weights build_model creates (counted independently here)."""
    import torch

    from collect.models import build_model

    for arch, depth in (("fcn", 2), ("fcn", 3), ("fcn_bn", 3)):
        cfg = plan("mnist", width=32, depth=depth, arch=arch)[0].config
        net = build_model(cfg.model, (1, 28, 28), 10, 0)
        weights = [m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Linear)]
        assert step_flop(cfg) == 2 * 32 * (3 * sum(weights) - weights[0]), arch


def test_auto_stacks_small_nets_with_enough_training():
    runs = plan()  # 16 runs of MNIST-1D 40-64-10, 100 epochs of 32 steps
    choice = choose(runs, "auto")
    assert [len(s) for s in choice.stacks] == [16] and not choice.alone
    assert choice.line().startswith("--stack auto: stacking 1 group(s) of 16 runs; 0 run(s) one at a time")


def test_auto_leaves_compute_bound_steps_alone_where_on_stacks_them():
    runs = plan("mnist", width=128, depth=2)  # the quick model
    auto = choose(runs, "auto")
    assert not auto.stacks and len(auto.alone) == 16
    assert "arithmetic dominates" in auto.line() and "16 because" in auto.line()
    assert [len(s) for s in choose(runs, "on").stacks] == [16]


@pytest.mark.parametrize("runs, reason", [
    (plan(lrs=(0.01,), seeds=(0, 1, 2)), "fewer than 4"),  # 3 runs
    (plan(epochs=2, n_train=200), "too little training"),  # 16 runs x 14 steps
])
def test_auto_does_not_stack_small_groups_or_short_training(runs, reason):
    choice = choose(runs, "auto")
    assert not choice.stacks and reason in choice.line()
    assert why_not(runs) is not None and reason in why_not(runs)


def test_nothing_unsupported_is_stacked_in_any_mode():
    runs = plan("mnist", arch="lenet5") + plan(optimizer="rmsprop")
    for mode in ("auto", "on"):
        choice = choose(runs, mode)
        assert not choice.stacks and len(choice.alone) == 32, mode
        assert "model.arch = 'lenet5'" in choice.line() and "optim.optimizer = 'rmsprop'" in choice.line()


def test_off_and_dask_stack_nothing():
    runs = plan()
    assert not choose(runs, "off").stacks
    assert not choose(runs, "auto", executor="dask").stacks and "Dask" in choose(runs, "auto", executor="dask").line()
    assert choose(runs, "on", executor="dask").stacks  # asked for explicitly
    with pytest.raises(ValueError, match="auto, on or off"):
        choose(runs, "yes")


def test_steps_of_is_the_step_budget():
    cfg = plan(n_train=1000, batch=32, epochs=100)[0].config
    assert steps_of(cfg) == 100 * 32  # ⌈1000 / 32⌉ = 32 steps an epoch


def test_default_command_lines_of_the_tests_and_the_quick_sweep_stay_one_at_a_time():
    """Tests that run ``python -m collect`` with default options compare exact values: their specs, and the built-in
    quick sweep at its default scale, must not be stacked by ``auto`` (stacked results are equal only to rounding)."""
    import tomllib

    from tests.collect.test_concurrency import SPEC as RACE
    from tests.collect.test_executors import CLI_SPEC

    for text in (CLI_SPEC, RACE):
        assert not choose(expand(parse_spec(tomllib.loads(text), "t.toml")), "auto").stacks
    quick = load_spec(find_sweep("quick"))
    assert not choose(expand(quick, None), "auto").stacks


def test_auto_on_the_study_sweep_keeps_exactly_the_stacks_the_model_accepts():
    from collect.stack_plan import plan_stacks

    runs = expand(load_spec(find_sweep("study")), "cpu")
    choice = choose(runs, "auto")
    planned, _, _ = plan_stacks(runs)
    accepted = {tuple(p.config_hash for p in m) for m in planned if why_not(m) is None}
    assert {tuple(p.config_hash for p in m) for m in choice.stacks} == accepted
    assert sum(map(len, choice.stacks)) + len(choice.alone) == len(runs)


def test_the_stacked_executor_hands_the_stacks_auto_rejects_to_the_inner_executor():
    from collect.runner import SweepTarget
    from collect.stack_executor import stacked_executor

    handed: list = []

    def inner(runs, target):
        handed.extend(runs)
        return iter(())

    runs = plan("mnist", width=128, depth=2)  # compute-bound: rejected, so nothing is trained here
    execute = stacked_executor(inner, workers=1, pays=why_not)
    assert list(execute(runs, SweepTarget("sqlite:///unused.db", "0", None, "auto", device="cpu", progress=False))) == []
    assert sorted(p.config_hash for p in handed) == sorted(p.config_hash for p in runs)
