"""Stacked training (collect.train_stacked) against one-at-a-time training (collect.train.train) on a tiny sweep.

Reference: the same configurations trained one at a time exactly as ``run_one`` trains them. Tolerance: the batched
matrix products of the stack sum in a different order than ``nn.Linear``, so weights agree only to float32 rounding
amplified by training; we require identical stopping points and accuracies, and output margins within 1e-4
relative (the issue's tolerance) — a real bug (wrong data order, dropout mask, optimizer formula or stopping
rule) moves them by orders of magnitude more.
"""

from __future__ import annotations


import pytest
import torch

from collect import tracking
from collect.losses import get_loss
from collect.models import build_model
from collect.optim import build_optimizer
from collect.runner import run_sweep, to_tensors
from collect.stack_executor import stacked_executor
from collect.stack_plan import plan_stacks
from collect.train_stacked import replay_train, train_alone, train_stack, trains_alone
from collect.sweep import expand, parse_spec
from collect.train import train
from collect.data import load_dataset

TINY = {
    "name": "tiny-stack",
    "seeds": [0, 1],
    "measures": ["margins"],
    "base": {
        "data": {"dataset": "digits", "n_train": 60, "n_test": 40},
        "model": {"arch": "fcn", "width": 12, "depth": 2},
        "optim": {"optimizer": "sgd", "lr": 0.1, "batch_size": 16, "momentum": 0.9},
        "stop": {"max_epochs": 8, "train_acc": 0.95, "extra_epochs": 1},
    },
    "grid": {"model.dropout": [0.0, 0.3]},
    "zip": [{"optim.lr": [0.1, 0.05], "model.init_sigma_w": [1.0, 1.5], "optim.weight_decay": [0.0, 0.01]}],
}
PLAIN_SGD = {**TINY, "base": {**TINY["base"], "optim": {"optimizer": "sgd", "lr": 0.1, "batch_size": 16},
                               "stop": {"max_epochs": 30, "train_acc": 0.95}}}  # slower than momentum
ADAM = {**TINY, "base": {**TINY["base"], "optim": {"optimizer": "adam", "lr": 0.01, "batch_size": 16}}}
BATCH_NORM = {**TINY, "base": {**TINY["base"], "model": {**TINY["base"]["model"], "batch_norm": True}}}
FCN_BN = {**TINY, "base": {**TINY["base"], "model": {"arch": "fcn_bn", "width": 12},
                            "stop": {"max_epochs": 12, "train_acc": 0.9}}}  # slower than fcn: a reachable target


def _planned(spec: dict):
    return expand(parse_spec(spec, "tiny.toml"))


def _one_at_a_time(cfg):
    torch.manual_seed(cfg.seed)  # as run_one does: dropout masks come from the global generator
    ds = load_dataset(cfg.data, cfg.data_seed)
    model = build_model(cfg.model, ds.input_shape, ds.num_classes, cfg.seed)
    loss_fn = get_loss(cfg.loss)
    result = train(cfg, model, to_tensors(ds, torch.device("cpu")), loss_fn,
                   lambda m: build_optimizer(cfg.optim, m, loss_fn), progress=False)
    return result, ds


def _stacked(cfg, stacked_run):
    ds = load_dataset(cfg.data, cfg.data_seed)
    model = build_model(cfg.model, ds.input_shape, ds.num_classes, cfg.seed)
    loss_fn = get_loss(cfg.loss)
    return replay_train(stacked_run)(cfg, model, to_tensors(ds, torch.device("cpu")), loss_fn,
                                      lambda m: build_optimizer(cfg.optim, m, loss_fn))


def _margins(model, ds) -> torch.Tensor:
    with torch.no_grad():
        f = model(torch.as_tensor(ds.x_test, dtype=torch.float32))
    y = torch.as_tensor(ds.y_test, dtype=torch.long)
    fy = f.gather(1, y[:, None])[:, 0]
    other = f.scatter(1, y[:, None], float("-inf")).max(1).values
    return fy - other


@pytest.mark.parametrize("spec", [TINY, PLAIN_SGD, ADAM, BATCH_NORM, FCN_BN],
                         ids=["sgd-momentum", "sgd", "adam", "batch-norm", "fcn_bn"])
def test_stacked_equals_one_at_a_time(spec) -> None:
    runs = _planned(spec)
    stacks, alone, _ = plan_stacks(runs)
    assert not alone and len(stacks) == 1 and len(stacks[0]) == len(runs) == 8
    configs = [p.config for p in stacks[0]]
    results = train_stack(configs, torch.device("cpu"))
    stop_points = set()
    for cfg, stacked_run in zip(configs, results):
        ref, ds = _one_at_a_time(cfg)
        got = _stacked(cfg, stacked_run)
        stop_points.add(got.steps)
        assert (got.steps, got.stop_reason, got.target_step) == (ref.steps, ref.stop_reason, ref.target_step)
        assert [r["train_acc"] for r in got.curves] == [r["train_acc"] for r in ref.curves]
        assert [r["test_acc"] for r in got.curves] == [r["test_acc"] for r in ref.curves]
        m_ref, m_got = _margins(ref.model, ds), _margins(got.model, ds)
        assert torch.allclose(m_got, m_ref, rtol=1e-4, atol=1e-4 * float(m_ref.abs().max()))
        if cfg.model.dropout:
            continue  # the extra step draws its dropout mask from the global generator, whatever state it is in
        # one more step from the final iterate (λ_max between iterates) continues the same optimizer state
        nxt_ref, nxt_got = ref.next_iterate(), got.next_iterate()
        for k in nxt_ref:
            assert torch.allclose(nxt_got[k], nxt_ref[k], rtol=1e-4, atol=1e-5), k
    assert len(stop_points) > 1  # runs stopped at different steps, each at its own


def _alone(cfg):
    ds = load_dataset(cfg.data, cfg.data_seed)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, ds.input_shape, ds.num_classes, cfg.seed)
    loss_fn = get_loss(cfg.loss)
    got = train_alone(cfg, model, to_tensors(ds, torch.device("cpu")), loss_fn,
                      lambda m: build_optimizer(cfg.optim, m, loss_fn))
    assert got.model is model
    return got, ds


@pytest.mark.parametrize("spec", [TINY, PLAIN_SGD, ADAM, BATCH_NORM, FCN_BN],
                         ids=["sgd-momentum", "sgd", "adam", "batch-norm", "fcn_bn"])
def test_a_run_trained_alone_equals_train(spec) -> None:
    """``train_alone`` (run_one's path for such runs: a stack of one) against ``collect.train.train`` on the same
    model object run_one builds, at the tolerance of the stacked test above (rounding amplified by training)."""
    for planned in _planned(spec):
        cfg = planned.config
        assert trains_alone(cfg)
        ref, ds = _one_at_a_time(cfg)
        got, _ = _alone(cfg)
        assert (got.steps, got.stop_reason, got.target_step) == (ref.steps, ref.stop_reason, ref.target_step)
        assert [r["train_acc"] for r in got.curves] == [r["train_acc"] for r in ref.curves]
        assert [r["test_acc"] for r in got.curves] == [r["test_acc"] for r in ref.curves]
        for a, b in zip(got.curves, ref.curves):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        m_ref, m_got = _margins(ref.model, ds), _margins(got.model, ds)
        assert torch.allclose(m_got, m_ref, rtol=1e-4, atol=1e-4 * float(m_ref.abs().max()))
        for k, v in ref.init_state.items():
            assert torch.equal(got.init_state[k], v), k
        if not cfg.model.dropout:  # the next iterate, built on demand, continues the same optimizer state
            nxt_ref, nxt_got = ref.next_iterate(), got.next_iterate()
            for k in nxt_ref:
                assert torch.allclose(nxt_got[k], nxt_ref[k], rtol=1e-4, atol=1e-5), k
            assert all(torch.equal(a, b) for a, b in zip(got.next_iterate().values(), nxt_got.values()))  # same each call


@pytest.mark.parametrize("spec", [TINY, PLAIN_SGD, ADAM, BATCH_NORM, FCN_BN],
                         ids=["sgd-momentum", "sgd", "adam", "batch-norm", "fcn_bn"])
def test_stacked_runs_equal_the_same_runs_one_at_a_time(spec) -> None:
    """A stack of 8 (dropout 0 and 0.3, weight decay 0 and 0.01, two learning rates) against each run as run_one
    trains it one at a time (``train_alone``): a run's arithmetic does not depend on the other runs of its stack,
    so weights, every curve value and the margins agree to 1e-6 relative (in practice bit for bit) and the
    stopping steps are identical."""
    configs = [p.config for p in _planned(spec)]
    stacked = train_stack(configs, torch.device("cpu"))
    assert len({r.steps for r in stacked}) > 1
    for cfg, run in zip(configs, stacked):
        got, ds = _alone(cfg)
        ref = _stacked(cfg, run)
        assert (got.steps, got.stop_reason, got.target_step) == (ref.steps, ref.stop_reason, ref.target_step)
        assert len(got.curves) == len(ref.curves)
        for a, b in zip(got.curves, ref.curves):
            assert a.keys() == b.keys()
            for k in a:
                assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-12), k
        for v, w in zip(ref.model.state_dict().values(), got.model.state_dict().values()):
            torch.testing.assert_close(w, v, rtol=1e-6, atol=1e-6 * float(v.abs().max()))
        torch.testing.assert_close(_margins(got.model, ds), _margins(ref.model, ds), rtol=1e-6, atol=1e-7)


def test_only_what_stacking_supports_trains_alone() -> None:
    base = _planned(TINY)[0].config
    assert trains_alone(base)
    assert trains_alone(_planned(BATCH_NORM)[0].config) and trains_alone(_planned(FCN_BN)[0].config)
    for change in ({"optim": {"optimizer": "rmsprop", "lr": 0.01, "batch_size": 16}},
                   {"model": {"arch": "lenet5"}},
                   {"loss": "mse"}):
        spec = {**TINY, "base": {**TINY["base"], **change}, "grid": {}, "zip": []}
        cfg = _planned(spec)[0].config
        assert not trains_alone(cfg), change
        with pytest.raises(ValueError, match="collect.train.train"):
            train_alone(cfg, None, None, None, None)


def test_unsupported_runs_fall_back_with_a_reason() -> None:
    runs = _planned({**TINY, "grid": {"optim.swa": [False, True]}, "zip": []})
    stacks, alone, notes = plan_stacks(runs)
    assert [len(s) for s in stacks] == [2] and len(alone) == 2
    assert any("optim.swa" in n for n in notes)
    lenet = _planned({**TINY, "base": {**TINY["base"], "model": {"arch": "lenet5"}}, "grid": {}, "zip": []})
    assert "model.arch = 'lenet5'" in plan_stacks(lenet)[2][0]
    lonely = _planned({**TINY, "seeds": [0], "grid": {}, "zip": []})
    stacks, alone, notes = plan_stacks(lonely)
    assert not stacks and len(alone) == 1 and "no other run shares its shape" in notes[0]


def test_one_run_diverging_fails_alone() -> None:
    runs = _planned({**TINY, "seeds": [0], "grid": {}, "zip": [{"optim.lr": [0.05, 1e6]}]})
    results = train_stack([p.config for p in runs], torch.device("cpu"))
    assert results[0].diverged is None and results[0].steps > 0
    assert results[1].diverged and "lower optim.lr" in results[1].diverged


def test_stacked_sweep_logs_each_run_as_its_own_child(mlflow_uri) -> None:
    from collect.runner import sequential_executor

    runs = _planned({**TINY, "seeds": [0], "grid": {"model.dropout": [0.0, 0.3]}, "zip": []})
    summary = run_sweep(runs, sweep="tiny-stack", tracking_uri=mlflow_uri, device="cpu", progress=False,
                        executor=stacked_executor(sequential_executor))
    assert summary.finished == 2
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("tiny-stack")
    kids = tracking.child_runs(client, exp.experiment_id)
    assert len(kids) == 2
    for kid in kids:
        assert "measure/margin_mean" in kid.data.metrics and "train/steps" in kid.data.metrics  # MLflow's grouped names
        assert len(client.get_metric_history(kid.info.run_id, "curve/train_loss")) >= 2


def test_study_sweep_has_the_promised_size_and_stacks_by_cell() -> None:
    from collect.sweep import find_sweep, load_spec

    spec = load_spec(find_sweep("study"))
    assert {"smoke", "cpu", "full"} <= set(spec.scales)
    full = expand(spec, "full")
    assert len(full) >= 2000
    axes = {k for r in full for k in r.axes}
    assert len(axes) >= 5 and all(len({r.axes[a] for r in full}) == 3 for a in axes)
    assert len({r.config.seed for r in full}) >= 2
    cfg = full[0].config
    assert cfg.data.dataset == "mnist1d" and cfg.stop.train_loss == 0.01 and cfg.loss == "cross_entropy"
    stacks, alone, _ = plan_stacks(full[:243])  # the first 243: one (depth, width) pair, 3 batch sizes
    assert not alone and [len(s) for s in stacks] == [64, 17] * 3  # 81 runs per cell, split at max_stack = 64
    assert len(expand(spec, "smoke")) <= 8


def test_stacked_runs_are_measured_in_worker_processes(mlflow_uri, tmp_path) -> None:
    """``--stack --workers 2``: the stack trains here, its runs are measured and logged in two worker processes
    (``collect.executors.ProcessPool`` with the stacked results), and each child run holds what measuring in this
    process gives (same weights handed over, same seeded measures; rel 1e-6 allows another thread count)."""
    from mlflow import MlflowClient

    from collect.runner import sequential_executor

    runs = _planned({**TINY, "seeds": [0], "grid": {"model.dropout": [0.0, 0.3]}, "zip": []})
    values = {}
    for workers, uri in ((1, mlflow_uri), (2, f"sqlite:///{tmp_path}/pool.db")):
        summary = run_sweep(runs, sweep="tiny-stack", tracking_uri=uri, device="cpu", progress=False,
                            executor=stacked_executor(sequential_executor, workers=workers))
        assert summary.finished == 2
        client = MlflowClient(tracking_uri=uri)
        kids = tracking.child_runs(client, client.get_experiment_by_name("tiny-stack").experiment_id)
        values[workers] = {k.data.tags["config_hash"]: k.data.metrics for k in kids}
    assert values[1].keys() == values[2].keys()
    for h, metrics in values[1].items():
        for key in ("measure/margin_mean", "gen/test_acc", "train/steps"):
            assert values[2][h][key] == pytest.approx(metrics[key], rel=1e-6), (h, key)


def test_spread_splits_the_largest_stacks_until_every_worker_has_one() -> None:
    from collect.stack_plan import spread

    runs = _planned({**TINY, "seeds": [0, 1, 2, 3], "grid": {"model.dropout": [0.0, 0.3]}, "zip": []})
    assert len(runs) == 8
    assert [len(s) for s in spread([runs], 2)] == [4, 4]
    assert sorted(len(s) for s in spread([runs, runs[:2]], 3)) == [2, 4, 4]
    assert [len(s) for s in spread([runs[:3]], 2)] == [3]  # below 4 runs a stack stays whole
    assert sorted(p.config_hash for s in spread([runs], 4) for p in s) == sorted(p.config_hash for p in runs)


def test_a_stack_that_fails_to_train_falls_back_to_one_at_a_time(mlflow_uri, monkeypatch, capsys) -> None:
    """If training a stack raises, its runs are trained one at a time (and said so), not lost."""
    import collect.stack_executor as stacked_module
    from collect.runner import sequential_executor

    def broken(*args, **kwargs):
        raise MemoryError("out of memory in the stack")

    monkeypatch.setattr(stacked_module, "train_stack", broken)
    runs = _planned({**TINY, "seeds": [0], "grid": {"model.dropout": [0.0, 0.3]}, "zip": []})
    summary = run_sweep(runs, sweep="tiny-stack", tracking_uri=mlflow_uri, device="cpu", progress=False,
                        executor=stacked_executor(sequential_executor))
    assert summary.finished == 2
    assert "training a stack of 2 runs failed (MemoryError" in capsys.readouterr().err


STOPS = [
    {"max_steps": 13},  # a budget that ends inside an epoch (4 steps per epoch here)
    {"max_epochs": 3, "max_steps": 100},
    {"max_epochs": 30, "train_loss": 0.3, "extra_epochs": 2},
    {"max_epochs": 30, "train_acc": 0.9, "eval_every": 3},
    {"max_epochs": 2, "train_acc": 1.0},  # the cap comes before the target
]


@pytest.mark.parametrize("stop", STOPS, ids=["max_steps", "max_epochs", "loss+extra", "acc+eval_every", "capped"])
def test_stacked_and_one_at_a_time_share_the_stop_rule(stop) -> None:
    """The same stop steps, reasons, target steps and evaluation steps, on a grid of budgets and targets."""
    spec = {**TINY, "seeds": [0, 1], "grid": {}, "zip": [{"optim.lr": [0.1, 0.03]}],
            "base": {**TINY["base"], "stop": stop}}
    configs = [p.config for p in _planned(spec)]
    for cfg, got in zip(configs, train_stack(configs, torch.device("cpu"))):
        ref, _ = _one_at_a_time(cfg)
        assert (got.steps, got.stop_reason, got.target_step) == (ref.steps, ref.stop_reason, ref.target_step), stop
        assert [r["step"] for r in got.curves] == [r["step"] for r in ref.curves]


def test_diverging_run_fails_with_the_message_of_one_at_a_time_training() -> None:
    from collect.train import Diverged

    runs = _planned({**TINY, "seeds": [0], "grid": {}, "zip": [{"optim.lr": [0.05, 1e6]}]})
    stacked = train_stack([p.config for p in runs], torch.device("cpu"))
    with pytest.raises(Diverged) as single:
        _one_at_a_time(runs[1].config)
    assert stacked[1].diverged == str(single.value)


def test_train_outcome_is_logged_for_stacked_and_one_at_a_time_runs(mlflow_uri) -> None:
    """``train.learned`` always (0 for a run left at chance), ``train.converged`` / ``train.target_step`` only for a
    target sweep, and the ``comparison_point`` tag, whether the runs were stacked or trained one at a time."""
    from mlflow import MlflowClient

    from collect.runner import sequential_executor

    base = {**TINY, "seeds": [0], "grid": {}, "zip": [{"optim.lr": [0.1, 1e-9]}]}  # lr 1e-9: stays at chance
    target = {**base, "name": "tiny-target"}
    budget = {**base, "name": "tiny-budget", "base": {**TINY["base"], "stop": {"max_steps": 30}}}
    client = MlflowClient(tracking_uri=mlflow_uri)
    for spec, executor in ((target, stacked_executor(sequential_executor)), (budget, sequential_executor)):
        summary = run_sweep(_planned(spec), sweep=spec["name"], tracking_uri=mlflow_uri, device="cpu", progress=False,
                            executor=executor)
        assert summary.finished == 2
        kids = tracking.child_runs(client, client.get_experiment_by_name(spec["name"]).experiment_id)
        by_lr = {float(k.data.params["optim.lr"]): k.data for k in kids}
        assert by_lr[0.1].metrics["train/learned"] == 1.0 and by_lr[1e-9].metrics["train/learned"] == 0.0
        for run in by_lr.values():
            if spec is target:
                assert run.tags["comparison_point"] == "train accuracy >= 0.95 + 1 epochs"
                assert "train/converged" in run.metrics
            else:
                assert run.tags["comparison_point"] == "30 steps"
                assert "train/converged" not in run.metrics and "train/target_step" not in run.metrics
        if spec is target:
            assert by_lr[0.1].metrics["train/converged"] == 1.0 and by_lr[0.1].metrics["train/target_step"] > 0
            assert by_lr[1e-9].metrics["train/converged"] == 0.0 and "train/target_step" not in by_lr[1e-9].metrics
