"""Spec values that cannot run are caught by ``--dry-run`` (errors: one line naming the file and the field; warnings
for values that run but not as written). In-process (``collect.cli.main``)."""

from __future__ import annotations

import pytest

from collect import footprint
from collect.cli import main
from collect.config import DataConfig, ModelConfig, RunConfig

SPEC = """
name = "values"
seeds = [0]
measures = ["margins"]
[base.data]
dataset = "digits"
n_train = 100
n_test = 40
[base.model]
arch = "fcn"
width = 8
depth = 1
[base.optim]
lr = 0.1
batch_size = 10
[base.stop]
max_epochs = 1
"""


def dry_run(tmp_path, capsys, text: str) -> tuple[int, str, str]:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    code = main(["--config", str(path), "--dry-run"])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("edit, expected", [
    (("lr = 0.1", "lr = inf"), "optim.lr = inf: must be a finite number"),
    (("lr = 0.1", "lr = nan"), "optim.lr = nan: must be a finite number"),
    (("lr = 0.1", "lr = -0.1"), "optim.lr = -0.1 must be > 0"),
    (("measures = [\"margins\"]", "measures = [{name = \"hessian_trace\", options = {n_samples = -5}}]"),
     "option hessian_trace.n_samples = -5: a count, must be >= 1"),
    (("measures = [\"margins\"]", "measures = [{name = \"sharpness\", options = {epsilon = inf}}]"),
     "option sharpness.epsilon = inf: must be a finite number"),
    (("n_train = 100", "n_train = -5"), "data.n_train = -5 must be > 0"),
    (("seeds = [0]", "seeds = [-1]"), "seeds = [-1]: [-1] negative; seeds must be >= 0"),
    (("n_train = 100", "n_train = 100\ndata_seed = -2"), "data.data_seed = -2 must be >= 0"),
    (('name = "values"', 'name = ""'), "name = '': give the sweep a non-empty name"),
    (('name = "values"', 'name = "  "'), "give the sweep a non-empty name"),
    (("max_epochs = 1\n", 'max_epochs = 1\n[grid]\n"optim.lr" = [0.1, 0.2]\n[[zip]]\n"optim.lr" = [0.3, 0.4]\n"optim.batch_size" = [5, 10]\n'),
     "axis 'optim.lr' is set in grid and in zip[0]"),
    (("max_epochs = 1\n", 'max_epochs = 1\n[grid]\n"optim.lr" = [0.1, 0.2]\n[[cases]]\n"optim.lr" = 0.3\n'),
     "axis 'optim.lr' is set in grid and in cases"),
    (("max_epochs = 1\n", 'max_epochs = 1\n[[zip]]\n"optim.lr" = [0.1]\n[[zip]]\n"optim.lr" = [0.3]\n'),
     "axis 'optim.lr' is set in zip[0] and in zip[1]"),
    (("max_epochs = 1\n", 'max_epochs = 1\n[[cases]]\nlabel = ""\n"optim.lr" = 0.3\n'), "label = '': give a non-empty label"),
])
def test_dry_run_rejects_values_that_cannot_run(tmp_path, capsys, edit, expected):
    old, new = edit
    assert old in SPEC
    code, _, err = dry_run(tmp_path, capsys, SPEC.replace(old, new, 1))
    line = error_line(err)
    assert code == 2 and expected in line and str(tmp_path / "spec.toml") in line, line


def test_an_empty_experiment_name_is_rejected_before_anything_runs(tmp_path, capsys):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    code = main(["--config", str(path), "--experiment", "", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    line = error_line(capsys.readouterr()[1])
    assert code == 2 and "--experiment '': give the MLflow experiment a non-empty name" in line
    assert not (tmp_path / "m.db").exists()


def test_dry_run_warns_about_duplicates_a_big_batch_and_a_model_too_large_for_memory(tmp_path, capsys):
    text = (SPEC.replace("seeds = [0]", "seeds = [0, 1, 0]").replace("batch_size = 10", "batch_size = 512")
            + '[grid]\n"optim.lr" = [0.1, 0.2, 0.10]\n"model.width" = [8, 100000000]\n')
    code, out, err = dry_run(tmp_path, capsys, text)
    assert code == 0 and "checks passed" in out
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert "warning: seeds lists 0 (2 times); each repeat is the same configuration and is trained once" in warnings
    assert any(w.startswith("warning: grid.optim.lr lists 0.1 (2 times)") for w in warnings), warnings
    assert any("optim.batch_size = 512 exceeds the 100 training examples" in w and "in 8 of 8 runs" in w
               and "full batch, one step per epoch" in w for w in warnings), warnings
    memory = [w for w in warnings if "of memory" in w]
    assert len(memory) == 1 and "width 100000000" in memory[0] and "more than this machine's" in memory[0], warnings
    assert "runs in sweep 'values'" in out and out.count("seed=") == 8  # 2 lr x 2 widths x 2 seeds: repeats merged


def test_dry_run_warns_that_a_very_deep_net_does_not_fit(tmp_path, capsys):
    _, _, err = dry_run(tmp_path, capsys, SPEC.replace("depth = 1", "depth = 5000").replace("width = 8", "width = 256")
                        .replace("n_train = 100", "n_train = 1000").replace('dataset = "digits"', 'dataset = "mnist"'))
    need, params = footprint.run_memory(RunConfig(data=DataConfig(dataset="mnist", n_train=1000),
                                                  model=ModelConfig(width=256, depth=5000)), (1, 28, 28), 10)
    memory = footprint.machine_memory()
    assert (need > memory) == ("of memory" in err), (need, memory, err)


def test_an_ordinary_spec_gets_no_warning(tmp_path, capsys):
    code, _, err = dry_run(tmp_path, capsys, SPEC)
    assert code == 0 and "warning" not in err, err


# ------------------------------------------------------------------ the memory estimate's parts


@pytest.mark.parametrize("model", [
    ModelConfig(arch="fcn", width=32, depth=3), ModelConfig(arch="fcn", width=16, depth=2, batch_norm=True, dropout=0.2),
    ModelConfig(arch="fcn_bn", width=24), ModelConfig(arch="affine"), ModelConfig(arch="fcn", width=5, depth=0),
])
def test_the_fcn_formula_counts_what_a_built_model_has(model):
    """Ground truth: the model built by collect.models on the meta device (parameters counted by torch, activations
    by forward hooks on every leaf module)."""
    assert footprint.model_size(model, (1, 28, 28), 10) == footprint._meta_size(model, (1, 28, 28), 10)


def test_builtin_input_shapes_match_the_loaded_pools():
    from pathlib import Path

    from collect.boolean import N_BITS
    from collect.datasets import load_pool

    assert footprint.BUILTIN_SHAPES["mnist"] == load_pool("mnist", Path("data/cache")).input_shape
    assert footprint.BUILTIN_SHAPES["boolean"] == (N_BITS,)
    assert footprint.BUILTIN_SHAPES["digits"] == load_pool("digits", Path("data/cache")).input_shape


def test_run_memory_follows_its_formula():
    cfg = RunConfig(data=DataConfig(n_train=3000), model=ModelConfig(width=10, depth=1))
    params, activations = footprint.model_size(cfg.model, (1, 28, 28), 10)
    assert params == 784 * 10 + 10 + 10 * 10 + 10
    assert activations == 784 + 10 * 2 + 10
    need, p = footprint.run_memory(cfg, (1, 28, 28), 10)
    assert p == params and need == 4 * (params * (4 + 0) + 2 * activations * 2048)  # sgd without momentum: no state
    adam = RunConfig(data=DataConfig(n_train=100), model=ModelConfig(width=10, depth=1), optim=cfg.optim.__class__(optimizer="adam"))
    assert footprint.run_memory(adam, (1, 28, 28), 10)[0] == 4 * (params * 6 + 2 * activations * 100)
