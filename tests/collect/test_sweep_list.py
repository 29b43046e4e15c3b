"""``python -m collect --list`` names every scale a sweep can run at, its default included."""
from __future__ import annotations

from collect.cli import main
from collect.sweep import list_sweeps, parse_spec

SPEC = {
    "name": "s", "default_scale": "cpu", "measures": ["norms"],
    "base": {"data": {"dataset": "digits", "n_train": 40, "n_test": 20}, "model": {"arch": "fcn", "width": 8, "depth": 1},
             "optim": {"lr": 0.1, "batch_size": 20}, "stop": {"max_epochs": 1}},
    "scales": {"smoke": {"seeds": [0]}},
}


def test_default_scale_without_a_table_is_a_scale() -> None:
    assert parse_spec(SPEC, "s.toml").scales == ["cpu", "smoke"]  # the base config is the cpu scale
    assert parse_spec({**SPEC, "default_scale": "smoke"}, "s.toml").scales == ["smoke"]


def test_list_marks_each_default(capsys) -> None:
    assert main(["--list"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.strip()}
    for spec in list_sweeps():
        if spec.default_scale:
            assert f"{spec.default_scale} (default)" in lines[spec.name], lines[spec.name]
