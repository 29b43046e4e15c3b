"""The convergence probe (collect.probe, ``python -m collect --probe``) and the per-level shares at the target
(collect.levels).

Ground truth for the probe's numbers is the sweep's own training path: the same configuration trained one at a time
by ``collect.train.train`` exactly as ``run_one`` trains it must reach the target at the same step. The tiny spec has
one axis level that cannot reach the target (a learning rate of 1e-4 moves a 16-unit net on 60 digits nowhere near
100 % train accuracy in 30 epochs) and one that does, so a probe that names the wrong level fails.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from collect.cli import main
from collect.config import SpecError
from collect.levels import axis_groups, level_shares, shares_line, target_summary
from collect.probe import (
    CellResult, ProbeResult, default_cap, dry_run_lines, epoch_cap, probe_cells, probe_config, probe_path, report_lines, run_probe,
    spec_hash, suggest_cap,
)
from collect.sweep import expand, parse_spec

TINY = {
    "name": "tiny-probe",
    "seeds": [0, 1],
    "measures": ["margins"],
    "base": {
        "data": {"dataset": "digits", "n_train": 60, "n_test": 40},
        "model": {"arch": "fcn", "width": 16, "depth": 1},
        "optim": {"optimizer": "sgd", "lr": 0.1, "batch_size": 16},
        "stop": {"max_epochs": 10, "train_acc": 1.0, "extra_epochs": 2},
    },
    "grid": {"optim.lr": [0.2, 0.0001], "model.dropout": [0.0, 0.2]},
}
CAP = 30


def _runs(spec: dict = TINY):
    return expand(parse_spec(spec, "tiny.toml"))


def _with(spec: dict, section: str, **fields) -> dict:
    return {**spec, "base": {**spec["base"], section: {**spec["base"][section], **fields}}}


# --------------------------------------------------------------------------------------------- pure planning


def test_probe_cells_take_the_first_seed_of_every_cell():
    runs = _runs()
    cells = probe_cells(runs)
    assert len(runs) == 8 and len(cells) == 4
    assert {c.config.seed for c in cells} == {0}
    assert sorted(json.dumps(c.axes, sort_keys=True) for c in cells) == sorted({json.dumps(r.axes, sort_keys=True) for r in runs})


def test_probe_config_strips_measures_and_overtraining_and_sets_the_cap():
    cfg = probe_config(_runs()[0].config, 77)
    assert cfg.measures == () and cfg.curve_measures == () and not cfg.save_weights
    assert (cfg.stop.max_epochs, cfg.stop.max_steps, cfg.stop.extra_epochs, cfg.stop.train_acc) == (77, None, 0, 1.0)
    with pytest.raises(SpecError, match="--probe-cap-epochs"):
        probe_config(_runs()[0].config, 0)


def test_default_cap_is_three_times_the_runs_cap_in_epochs():
    assert default_cap(_runs()) == 30
    steps = dict(TINY, base={**TINY["base"], "stop": {"max_steps": 500, "train_acc": 1.0}})
    # 60 points at batch 16: 4 steps an epoch, so 500 steps are 125 epochs
    assert epoch_cap(_runs(steps)[0].config) == 125 and default_cap(_runs(steps)) == 375
    both = dict(TINY, base={**TINY["base"], "stop": {"max_steps": 500, "max_epochs": 50, "train_acc": 1.0}})
    assert default_cap(_runs(both)) == 150  # the smaller cap wins, as in training
    gd = dict(steps, base={**steps["base"], "optim": {"optimizer": "gd", "lr": 0.1}})
    assert epoch_cap(_runs(gd)[0].config) == 500  # full batch: one step an epoch


def test_a_sweep_mixing_target_and_budget_cases_probes_only_the_target_cells():
    mixed = {k: v for k, v in TINY.items() if k != "grid"}
    mixed["base"] = {**TINY["base"], "stop": {"max_epochs": 10}}
    mixed["cases"] = [{"label": "target", "stop.train_acc": 1.0, "optim.lr": 0.2},
                      {"label": "budget", "optim.lr": 0.2, "stop.max_epochs": 3}]
    lines: list[str] = []
    result = run_probe("mixed", "cpu", _runs(mixed), log=lines.append)
    assert [c.intervention for c in result.cells] == ["target"]
    assert result.cap_epochs == 30  # from the target case alone
    assert "1 more cell(s) are compared at a fixed budget and not probed" in lines[0]


def test_spec_hash_ignores_caps_seeds_and_measures_but_not_training():
    h = spec_hash(_runs())
    assert spec_hash(_runs(_with(TINY, "stop", max_epochs=99, extra_epochs=0))) == h
    assert spec_hash(_runs({**TINY, "seeds": [5], "measures": ["norms"]})) == h
    assert spec_hash(_runs(_with(TINY, "optim", batch_size=32))) != h
    assert spec_hash(_runs(_with(TINY, "stop", train_acc=0.9))) != h


def test_suggested_cap_is_one_and_a_half_times_the_slowest_cell_that_reached_the_target():
    cell = CellResult("x", {}, 0, True, 40, 10.0, 40, 10.0, 0.0, 1.0, True, 0.0)
    slow = dataclasses.replace(cell, target_epoch=41.0)
    missed = dataclasses.replace(cell, reached=False, target_epoch=None, target_step=None, epochs=500.0)
    assert suggest_cap([cell, slow, missed]) == math.ceil(1.5 * 41) == 62
    assert suggest_cap([missed]) is None


def test_probe_path_sits_beside_a_sqlite_store():
    assert str(probe_path("sqlite:////tmp/x/mlflow.db", "study", "cpu")) == "/tmp/x/probes/study-cpu.json"
    assert str(probe_path("http://host:5000", "study", "cpu")) == "data/probes/study-cpu.json"
    assert "/" not in probe_path("http://host:5000", "../evil", "cpu").name.replace("probes/", "")


# --------------------------------------------------------------------------------------------- levels


def test_level_shares_count_per_level_and_merge_zipped_axes():
    cells = [{"optim.optimizer": o, "optim.lr": lr, "model.dropout": d}
             for o, lr in (("sgd", 0.05), ("adam", 0.001)) for d in (0.0, 0.5)]
    met = [True, False, True, True]
    assert axis_groups(cells) == [("optim.optimizer", "optim.lr"), ("model.dropout",)]
    shares = {s.level: (s.k, s.n) for s in level_shares(cells, met)}
    assert shares == {"optim.optimizer=sgd, optim.lr=0.05": (1, 2), "optim.optimizer=adam, optim.lr=0.001": (2, 2),
                      "model.dropout=0.0": (2, 2), "model.dropout=0.5": (1, 2)}
    line = shares_line(level_shares(cells, met), 3, 4, "train accuracy >= 1")
    assert line.startswith("at the target (train accuracy >= 1): 3 of 4 runs (75 %); below 100 %: ")
    assert "model.dropout=0.5 1 of 2" in line and "adam" not in line
    with pytest.raises(ValueError):
        level_shares(cells, met[:2])


def test_target_summary_counts_finished_runs_with_train_converged_only():
    runs = _runs()
    outcome = lambda r, status, metrics: type("O", (), {"config_hash": r.config_hash, "status": status, "metrics": metrics})()  # noqa: E731
    outcomes = [outcome(r, "FINISHED", {"train.converged": float(r.config.optim.lr > 0.01)}) for r in runs[:6]]
    outcomes.append(outcome(runs[6], "FAILED", {}))
    summary = target_summary(runs, outcomes)
    assert (summary.k, summary.n, summary.condition) == (4, 6, "train accuracy >= 1")
    assert {s.level: (s.k, s.n) for s in summary.shares if s.axis == "optim.lr"} == {"optim.lr=0.2": (4, 4), "optim.lr=0.0001": (0, 2)}
    budget = [outcome(r, "FINISHED", {"train.steps": 10.0}) for r in runs]  # a budget sweep logs no train.converged
    assert target_summary(runs, budget) is None


# --------------------------------------------------------------------------------------------- training


def _reference_target_step(cfg) -> int | None:
    """The configuration trained one at a time exactly as run_one trains it."""
    from collect.data import load_dataset
    from collect.losses import get_loss
    from collect.models import build_model
    from collect.optim import build_optimizer
    from collect.runner import to_tensors
    from collect.train import train

    torch.manual_seed(cfg.seed)
    ds = load_dataset(cfg.data, cfg.data_seed)
    model = build_model(cfg.model, ds.input_shape, ds.num_classes, cfg.seed)
    loss_fn = get_loss(cfg.loss)
    result = train(cfg, model, to_tensors(ds, torch.device("cpu")), loss_fn, lambda m: build_optimizer(cfg.optim, m, loss_fn),
                   progress=False)
    return result.target_step


@pytest.fixture(scope="module")
def probed() -> ProbeResult:
    return run_probe("tiny-probe", "cpu", _runs(), cap_epochs=CAP, log=lambda line: None)


def test_probe_matches_one_at_a_time_training_and_names_the_level_that_cannot(probed):
    assert probed.target == "train accuracy >= 1" and probed.cap_epochs == CAP and len(probed.cells) == 4
    for cell, planned in zip(probed.cells, probe_cells(_runs())):
        assert cell.axes == dict(planned.axes)
        assert cell.target_step == _reference_target_step(probe_config(planned.config, CAP))
        assert cell.reached == (planned.config.optim.lr == 0.2)
    fast = [c for c in probed.cells if c.reached]
    assert all(c.target_epoch == c.target_step / 4 for c in fast)  # 60 points / batch 16 = 4 steps per epoch
    assert all(c.epochs == CAP and not c.learned for c in probed.cells if not c.reached)
    shares = {s.level: (s.k, s.n) for s in probed.shares()}
    assert shares["optim.lr=0.0001"] == (0, 2) and shares["optim.lr=0.2"] == (2, 2)
    text = "\n".join(report_lines(probed))
    assert f"optim.lr=0.0001: 0 of 2 cells reach train accuracy >= 1 within {CAP} epochs" in text
    assert f"suggested cap: stop.max_epochs = {suggest_cap(probed.cells)}" in text


def test_stacked_probe_agrees_with_one_at_a_time(probed):
    stacked = run_probe("tiny-probe", "cpu", _runs(), cap_epochs=CAP, stack=True, log=lambda line: None)
    assert stacked.stacked
    assert [(c.reached, c.target_step) for c in stacked.cells] == [(c.reached, c.target_step) for c in probed.cells]


def test_probe_refuses_a_budget_sweep():
    budget = {**TINY, "base": {**TINY["base"], "stop": {"max_steps": 50}}}
    with pytest.raises(SpecError, match="declares no training target"):
        run_probe("tiny", "cpu", _runs(budget), log=lambda line: None)


def test_result_round_trips_and_dry_run_checks_the_spec_hash(probed, tmp_path):
    path = tmp_path / "probe.json"
    path.write_text(probed.to_json())
    assert ProbeResult.from_json(path.read_text()) == probed
    lines = dry_run_lines(path, _runs())
    assert lines[0].startswith(f"probe result {path} (same spec hash") and any("optim.lr=0.0001: 0 of 2" in x for x in lines)
    assert "another version of this sweep" in dry_run_lines(path, _runs(_with(TINY, "optim", batch_size=32)))[0]
    assert "no probe result" in dry_run_lines(tmp_path / "absent.json", _runs())[0]


CLI_SPEC = """name = "tiny-cli"
seeds = [0]
measures = ["margins"]
[base.data]
dataset = "digits"
n_train = 60
n_test = 40
[base.model]
arch = "fcn"
width = 16
depth = 1
[base.optim]
lr = 0.2
batch_size = 16
[base.stop]
max_epochs = 30
train_acc = 1.0
[grid]
"optim.lr" = [0.2, 0.0001]
"""


def test_cli_probe_then_dry_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "tiny.toml"
    spec.write_text(CLI_SPEC)
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    assert main(["--config", str(spec), "--probe", "--tracking-uri", uri, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 cells reach train accuracy >= 1 within 90 epochs" in out
    assert "optim.lr=0.0001: 0 of 1 cells reach" in out
    written = tmp_path / "store" / "probes" / "tiny-cli-default.json"
    assert written.exists() and not (tmp_path / "store" / "mlflow.db").exists()  # no MLflow runs
    assert main(["--config", str(spec), "--dry-run", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert f"probe result {written} (same spec hash" in out and "optim.lr=0.0001: 0 of 1 cells reach" in out


def test_sweep_summary_and_parent_run_report_the_share_at_the_target(tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "tiny.toml"
    spec.write_text(CLI_SPEC)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["--config", str(spec), "--tracking-uri", uri, "--no-progress", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    # levels at 100 % are not listed on the line
    assert "at the target (train accuracy >= 1): 1 of 2 runs (50 %); below 100 %: optim.lr=0.0001 0 of 1\n" in out
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny-cli")
    parent = [r for r in client.search_runs([experiment.experiment_id]) if "at_target" in r.data.tags]
    assert len(parent) == 1 and parent[0].data.tags["at_target"].endswith("optim.lr=0.0001 0 of 1")
    levels = {d["level"]: (d["k"], d["n"]) for d in json.loads(parent[0].data.tags["at_target.levels"])}
    assert levels == {"optim.lr=0.2": (1, 1), "optim.lr=0.0001": (0, 1)}
