"""Smoke runs of the built-in sweeps that reproduce the papers: each one's ``--scale smoke`` expands, runs
to the end into a fresh MLflow store, and logs every measure it promises (final values and, for its curve measures,
values along training). The papers' conclusions are not asserted here; reports/reproductions.md reports them."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient

from collect import tracking
from collect.measures.registry import get_measure
from collect.runner import run_sweep
from collect.sweep import expand, find_sweep, load_spec

# The cheapest three run in the default suite (about 35 s together on 2 busy cores); the other four are marked slow
# (about 10-30 s each, 90 s together: `pytest -m slow tests/collect/test_paper_sweeps.py`).
FAST = ("flat-by-scaling", "l2-sharper", "margin-trace")
SLOW = ("keskar-batch", "alpha-scaling", "lambda-max", "volume")


def _promised_keys(name: str) -> set[str]:
    """The values a measure must log: its headline value (the key named like the measure, e.g. ``lambda_max``) when it
    has one, else every key it declares in ``directions`` (margins, per-sample trace: all always logged). Declared keys
    that exist only in some settings (``log_volume_sampled``: the Boolean system) are not required."""
    declared = set(get_measure(name).directions)
    return {name} if name in declared else declared


def check_sweep_logs_everything(sweep: str, uri: str) -> None:
    runs = expand(load_spec(find_sweep(sweep)), "smoke")
    assert runs, f"{sweep}: the smoke scale expands to no runs"
    summary = run_sweep(runs, sweep=sweep, tracking_uri=uri, device="cpu", progress=False, torch_threads=1)
    assert summary.failed == 0, [o.reason for o in summary.outcomes if o.status != "FINISHED"]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(sweep)
    kids = {r.data.tags[tracking.TAG_HASH]: r for r in tracking.child_runs(client, exp.experiment_id)}
    for planned in runs:
        run = kids[planned.config_hash]
        where = f"{sweep} run '{planned.intervention}'"
        assert run.info.status == "FINISHED", where
        metrics, tags = run.data.metrics, run.data.tags
        assert {"gen/test_acc", "gen/train_acc", "gen/train_loss"} <= set(metrics), where
        for spec in planned.config.measures:
            skipped = tags.get(f"measure_skipped.{spec.name}")
            if skipped is not None:
                assert skipped.strip(), f"{where}: {spec.name} skipped without a reason"
                continue
            assert f"time/{spec.name}" in metrics, f"{where}: {spec.name} neither logged nor skipped"
            logged = {k.removeprefix("measure/") for k in metrics if k.startswith("measure/")}
            promised = _promised_keys(spec.name)
            missing = promised - logged
            assert not missing, f"{where}: {spec.name} did not log {sorted(missing)}"
            # NaN is allowed only for correlations (undefined when, e.g., no point is correctly classified yet).
            for key in promised:
                assert math.isfinite(metrics[f"measure/{key}"]) or "_r_" in key, f"{where}: measure/{key} is not finite"
        for name in planned.config.curve_measures:
            keys = _promised_keys(name)
            histories = {k: client.get_metric_history(run.info.run_id, f"curve/{k}") for k in keys}
            assert all(len(h) >= 1 for h in histories.values()), f"{where}: curve.{name} keys missing along training"
            steps = {m.step for h in histories.values() for m in h}
            assert len(steps) >= 2, f"{where}: curve measure {name} logged at only {sorted(steps)}"


@pytest.mark.parametrize("sweep", FAST)
def test_paper_sweep_smoke(sweep: str, mlflow_uri: str) -> None:
    check_sweep_logs_everything(sweep, mlflow_uri)


@pytest.mark.slow
@pytest.mark.parametrize("sweep", SLOW)
def test_paper_sweep_smoke_slow(sweep: str, mlflow_uri: str) -> None:
    check_sweep_logs_everything(sweep, mlflow_uri)


def test_every_paper_sweep_has_smoke_cpu_and_paper_scales() -> None:
    for sweep in FAST + SLOW:
        spec = load_spec(find_sweep(sweep))
        assert {"smoke", "cpu", "paper"} <= set(spec.scales), sweep
        assert spec.default_scale == "cpu", sweep
        for scale in ("smoke", "cpu", "paper"):
            assert expand(spec, scale), (sweep, scale)


def test_lambda_max_gd_cases_run_a_fixed_budget_on_the_eos_squared_error() -> None:
    """The edge-of-stability check: every GD case of the cpu scale trains the ½‖f − y‖² loss for the full
    max_steps (no accuracy or loss stop, no epoch cap) and logs λ_max along training; minibatch cases keep paper 004's
    99 % training-accuracy stop."""
    runs = expand(load_spec(find_sweep("lambda-max")), "cpu")
    gd = [r.config for r in runs if r.config.optim.optimizer == "gd"]
    assert len(gd) >= 3
    for cfg in gd:
        assert cfg.loss == "mse" and cfg.stop.train_acc is None and cfg.stop.train_loss is None
        assert cfg.stop.max_epochs is None and cfg.stop.max_steps >= 1000
        assert "lambda_max" in cfg.curve_measures
    assert all(r.config.stop.train_acc == 0.99 for r in runs if r.config.optim.optimizer != "gd")


def test_keskar_batch_cpu_scale_keeps_the_papers_batch_to_dataset_ratios() -> None:
    """Paper 000 / Keskar et al.: batches 256 and 4096 of 60,000 MNIST images (0.43 % and 6.8 %); the cpu scale must
    keep both ratios (within 5 %), neither batch may be the full training set, and it needs >= 3 seeds."""
    runs = expand(load_spec(find_sweep("keskar-batch")), "cpu")
    ratios = sorted({r.config.optim.batch_size / r.config.data.n_train for r in runs})
    assert ratios == pytest.approx([256 / 60000, 4096 / 60000], rel=0.05)
    assert len({r.config.seed for r in runs}) >= 3
