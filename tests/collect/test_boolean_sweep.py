"""The ``boolean`` sweep (paper 002 section 5.1, the n = 7 Boolean system): its scales plan the experiment the paper
describes, and its smoke scale runs end to end into a fresh MLflow store logging log volume by EP and by direct
sampling. How well the two agree over the cpu scale is reported in reports/reproductions.md (reports/boolean_volume.py)."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient

from collect import tracking
from collect.boolean import N_INPUTS, boolean_target
from collect.sweep import expand, find_sweep, load_spec
from tests.collect.test_paper_sweeps import check_sweep_logs_everything


def _volume_options(run) -> dict:
    (spec,) = [m for m in run.config.measures if m.name == "log_volume"]
    return dict(spec.options)


def test_boolean_sweep_plans_the_paper_system_at_every_scale() -> None:
    spec = load_spec(find_sweep("boolean"))
    assert {"smoke", "cpu", "paper"} <= set(spec.scales)
    for scale in ("smoke", "cpu", "paper"):
        runs = expand(spec, scale)
        assert runs, scale
        for run in runs:
            cfg = run.config
            assert cfg.data.dataset == "boolean" and cfg.data.n_train + cfg.data.n_test == N_INPUTS, scale
            assert (cfg.model.arch, cfg.model.width, cfg.model.depth, cfg.model.activation) == ("fcn", 40, 2, "relu")
            assert (cfg.model.init_sigma_w, cfg.model.init_sigma_b) == (1.0, 0.1), "the NNGP prior of section 5.1"
            assert cfg.stop.train_acc == 1.0 and cfg.stop.comparison_point == "target", "compared at zero training error"
            assert _volume_options(run)["direct_samples"] > 0, f"{scale}: no direct sampling of P(f)"
            assert len(boolean_target(cfg.data.boolean_target)) == N_INPUTS
    cpu = expand(spec, "cpu")
    targets = {r.config.data.boolean_target for r in cpu}
    assert len(targets) == 7 and {r.config.seed for r in cpu} == {0, 1} and len(cpu) == 14
    # the targets run from trivial to complex: between 0 and 64 ones
    ones = sorted(int(boolean_target(t).sum()) for t in targets)
    assert ones[0] == 0 and ones[-1] >= 60


@pytest.mark.slow  # about 40 s of CPU (two trainings and 2 x 20,000 sampled networks); 2 minutes on busy cores
def test_boolean_smoke_logs_ep_and_sampled_log_volume(mlflow_uri: str) -> None:
    check_sweep_logs_everything("boolean", mlflow_uri)
    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("boolean")
    runs = {r.data.tags["intervention"]: r.data.metrics for r in tracking.child_runs(client, exp.experiment_id)}
    assert set(runs) == {"constant 0", "parity"}
    for label, m in runs.items():
        assert math.isfinite(m["measure/log_volume"]) and m["measure/log_volume"] < 0, label
        assert "measure/log_volume_sampled" in m and "diag/log_volume_sampled_se" in m, label
    const, parity = runs["constant 0"], runs["parity"]
    # The near-constant function found on the constant target is frequent among 20,000 random networks: the sampled
    # estimate is finite with a standard error, and EP agrees with it within 4 standard errors plus 0.5 nats: EP's own
    # bias on these near-constant functions is 0.26-0.48 nats at 10^5 samples (cpu scale, reports/reproductions.md).
    se = const["diag/log_volume_sampled_se"]
    assert math.isfinite(const["measure/log_volume_sampled"]) and 0 < se < 1
    assert abs(const["measure/log_volume"] - const["measure/log_volume_sampled"]) <= 4 * se + 0.5
    # Parity's function has P(f) ~ e^-70 by EP, never drawn in 20,000 samples: the documented NaN, not a number.
    assert parity["measure/log_volume"] < math.log(1 / 20_000) - 10
    assert math.isnan(parity["measure/log_volume_sampled"]) and math.isnan(parity["diag/log_volume_sampled_se"])
