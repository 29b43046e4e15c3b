"""README features of ``collect`` checked against references computed here: ``clean_train_acc`` and ``attack_fit``,
``save_weights`` (the artifact loads with ``weights_only=True`` and reproduces the logged numbers), and the
command line's ``--list``, ``--dry-run`` and ``--seeds``.

Conventions (collect/measures/generalization.py): on the training set S ∪ A,
``clean_train_acc`` = (1/|S|) Σ_{i∈S} 1[argmax f(x_i) = y_i] and ``attack_fit`` = (1/|A|) Σ_{i∈A} 1[argmax f(x_i) = ỹ_i]
with ỹ the attack set's wrong labels; ``train_acc`` is over S ∪ A. Both are logged only when A is not empty.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from collect.cli import main, parse_seeds
from collect.config import RunConfig
from collect.losses import cross_entropy
from collect.measures.context import MeasureContext
from collect.measures.generalization import generalization
from collect.sweep import SWEEP_DIR, expand, load_spec, parse_spec
from analyze.ledger import metric_column


def _context(x_train, y_train, is_attack) -> MeasureContext:
    model = nn.Linear(1, 2)
    with torch.no_grad():  # logits (-x, x): class 1 exactly when x > 0
        model.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model.bias.zero_()
    x_test, y_test = torch.tensor([[1.0], [-1.0]]), torch.tensor([1, 1])
    return MeasureContext(
        model=model.eval(), config=RunConfig(), x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        is_attack=is_attack, num_classes=2, loss_fn=cross_entropy, init_state={}, device=torch.device("cpu"), seed=0,
    )


def test_clean_train_acc_and_attack_fit_count_the_two_parts_of_the_training_set():
    # S: six points, four predicted correctly (the last two have x on the wrong side of 0).
    xs = torch.tensor([[1.0], [2.0], [-1.0], [-2.0], [3.0], [-3.0]])
    ys = torch.tensor([1, 1, 0, 0, 0, 1])
    # A: four attack points, three of which the model predicts with their (wrong) label.
    xa = torch.tensor([[0.5], [-0.5], [4.0], [-4.0]])
    ya = torch.tensor([1, 0, 1, 1])
    ctx = _context(torch.cat([xs, xa]), torch.cat([ys, ya]), torch.tensor([False] * 6 + [True] * 4))
    v = generalization(ctx).values
    assert v["clean_train_acc"] == pytest.approx(4 / 6)
    assert v["attack_fit"] == pytest.approx(3 / 4)
    assert v["train_acc"] == pytest.approx(7 / 10)  # S ∪ A
    assert v["test_acc"] == pytest.approx(1 / 2) and v["gap_acc"] == pytest.approx(7 / 10 - 1 / 2)
    # Without an attack set neither is logged (train_acc is then the clean accuracy).
    plain = generalization(_context(xs, ys, torch.zeros(6, dtype=torch.bool))).values
    assert "clean_train_acc" not in plain and "attack_fit" not in plain and plain["train_acc"] == pytest.approx(4 / 6)


def test_saved_weights_load_with_weights_only_and_reproduce_the_logged_numbers(mlflow_uri, tmp_path):
    """A run with ``save_weights = true`` and an attack set: rebuilding the architecture, loading
    ``model/state_dict.pt`` with ``torch.load(weights_only=True)`` and evaluating on the run's own data (rebuilt
    from its config) gives the logged train/test accuracy, clean_train_acc and attack_fit exactly (same float32
    computation on the same points)."""
    from collect.data import load_dataset
    from collect.models import build_model
    from collect.runner import run_sweep

    spec = {
        "name": "weights", "seeds": [3], "measures": [],
        "base": {
            "data": {"dataset": "digits", "n_train": 60, "n_test": 40, "attack_size": 20},
            "model": {"arch": "fcn", "width": 16, "depth": 1},
            "optim": {"lr": 0.1, "batch_size": 20},
            "stop": {"max_epochs": 3},
            "save_weights": True,
        },
    }
    planned = expand(parse_spec(spec, "weights.toml"))
    assert len(planned) == 1 and planned[0].config.save_weights
    summary = run_sweep(planned, sweep="weights", tracking_uri=mlflow_uri, device="cpu", progress=False)
    assert summary.finished == 1
    run_id = summary.outcomes[0].run_id
    client = MlflowClient(tracking_uri=mlflow_uri)
    logged = {metric_column(k): v for k, v in client.get_run(run_id).data.metrics.items()}  # gen/x -> gen.x
    state = torch.load(client.download_artifacts(run_id, "model/state_dict.pt", str(tmp_path)), weights_only=True)
    cfg = planned[0].config
    data = load_dataset(cfg.data, cfg.data_seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.seed)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        train_pred = model(torch.as_tensor(data.x_train)).argmax(1).numpy()
        test_pred = model(torch.as_tensor(data.x_test)).argmax(1).numpy()
    hit = train_pred == data.y_train
    assert logged["gen.train_acc"] == pytest.approx(hit.mean(), abs=1e-12)
    assert logged["gen.test_acc"] == pytest.approx((test_pred == data.y_test).mean(), abs=1e-12)
    assert logged["gen.clean_train_acc"] == pytest.approx(hit[~data.is_attack].mean(), abs=1e-12)
    assert logged["gen.attack_fit"] == pytest.approx(hit[data.is_attack].mean(), abs=1e-12)


SPEC_TOML = """
name = "cli-features"
seeds = [0, 1]
measures = ["norms"]
[base.data]
dataset = "digits"
n_train = 40
n_test = 20
[base.model]
arch = "fcn"
width = 8
depth = 1
[base.stop]
max_epochs = 1
[grid]
"optim.lr" = [0.01, 0.1]
"model.width" = [4, 8, 16]
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "cli-features.toml"
    path.write_text(SPEC_TOML)
    return path


def test_dry_run_prints_every_expanded_run_and_trains_nothing(spec_file, tmp_path, capsys):
    store = tmp_path / "never" / "mlflow.db"
    assert main(["--config", str(spec_file), "--dry-run", "--tracking-uri", f"sqlite:///{store}"]) == 0
    out = capsys.readouterr().out
    runs = expand(load_spec(spec_file))
    assert len(runs) == 2 * 3 * 2  # lr × width × seeds, counted by hand
    assert len({r.config_hash for r in runs}) == 12
    assert all(r.config_hash in out for r in runs)
    assert not store.exists() and not store.parent.exists()  # no store, no training
    assert "12" in out  # the total is stated


def test_seeds_option_replaces_the_spec_seeds(spec_file, capsys):
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3,7, 9") == [3, 7, 9]
    assert parse_seeds("5") == [5]
    assert main(["--config", str(spec_file), "--dry-run", "--seeds", "4,7"]) == 0
    out = capsys.readouterr().out
    chosen = expand(load_spec(spec_file), seeds=[4, 7])
    assert sorted({r.config.seed for r in chosen}) == [4, 7] and len(chosen) == 12
    assert all(r.config_hash in out for r in chosen)
    assert not any(r.config_hash in out for r in expand(load_spec(spec_file)) if r.config.seed == 0)
    assert main(["--config", str(spec_file), "--dry-run", "--seeds", "2-4"]) == 0
    out = capsys.readouterr().out
    assert all(r.config_hash in out for r in expand(load_spec(spec_file), seeds=[2, 3, 4]))
    for bad in ("a-b", "1-x", "one"):
        with pytest.raises(SystemExit) as exc:
            main(["--config", str(spec_file), "--dry-run", "--seeds", bad])
        assert exc.value.code == 2 and "--seeds" in capsys.readouterr().err


def test_list_names_every_built_in_sweep_with_its_scales(capsys):
    assert main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    files = sorted(SWEEP_DIR.glob("*.toml"))
    assert len(files) >= 8
    for path in files:
        raw = tomllib.loads(path.read_text())
        line = next((ln for ln in lines if ln.split() and ln.split()[0] == raw["name"]), None)
        assert line is not None, f"{raw['name']} not listed"
        assert all(scale in line for scale in raw.get("scales", {})), (raw["name"], line)
