"""The pre-flight checks (the store probe ``collect.store_check.check_store`` and the run checks
``collect.preflight.check_runs``) run exactly once per invocation: once in ``python -m collect`` (before torch is
imported), once in a library call of ``run_sweep``, and not at all in ``run_sweep(checked=True)``."""

from __future__ import annotations

from collections import Counter

import pytest

from collect import preflight, store_check, tracking
from collect.cli import main
from collect.runner import run_sweep
from collect.sweep import expand, parse_spec
from tests.collect.test_executors import CLI_SPEC

ONE_RUN = CLI_SPEC.replace("max_epochs = 40", "max_epochs = 1").replace("n_train = 300", "n_train = 60")


@pytest.fixture
def calls(monkeypatch) -> Counter:
    """Counts of the two checks, wherever they are called from (the CLI imports them from their modules, ``run_sweep``
    reaches the store probe through ``collect.tracking``); each still runs for real."""
    counts: Counter = Counter()

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(store_check, "check_store", counted("check_store", store_check.check_store))
    monkeypatch.setattr(tracking, "check_store", counted("check_store", tracking.check_store))
    monkeypatch.setattr(preflight, "check_runs", counted("check_runs", preflight.check_runs))
    return counts


def test_the_command_line_checks_the_store_and_the_runs_once(tmp_path, mlflow_uri, calls, capsys):
    spec = tmp_path / "one.toml"
    spec.write_text(ONE_RUN)
    assert main(["--config", str(spec), "--workers", "1", "--max-runs", "1", "--tracking-uri", mlflow_uri,
                 "--no-progress", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "1 finished, 0 failed" in out
    assert "--stack auto: stacking nothing; 1 run(s) one at a time (1 because no other run shares its shape)" in out
    assert calls == Counter(check_store=1, check_runs=1)


def test_a_library_call_of_run_sweep_is_still_checked_once(mlflow_uri, calls):
    import tomllib

    runs = expand(parse_spec(tomllib.loads(ONE_RUN), "one.toml"))[:1]
    summary = run_sweep(runs, sweep="fault-cli", tracking_uri=mlflow_uri, device="cpu", progress=False, torch_threads=1)
    assert summary.finished == 1
    assert calls == Counter(check_store=1, check_runs=1)


def test_run_sweep_skips_the_checks_its_caller_has_run(mlflow_uri, calls):
    import tomllib

    runs = expand(parse_spec(tomllib.loads(ONE_RUN), "one.toml"))[:1]
    summary = run_sweep(runs, sweep="fault-cli", tracking_uri=mlflow_uri, device="cpu", progress=False, torch_threads=1,
                        checked=True)
    assert summary.finished == 1
    assert calls == Counter()


def test_a_library_call_of_run_sweep_still_stops_a_bad_run_before_the_store(tmp_path, calls):
    import tomllib

    from collect.config import SpecError

    runs = expand(parse_spec(tomllib.loads(ONE_RUN.replace("n_train = 60", "n_train = 5000")), "one.toml"))[:1]
    with pytest.raises(SpecError, match="exceeds"):
        run_sweep(runs, sweep="fault-cli", tracking_uri=f"sqlite:///{tmp_path}/never.db", progress=False)
    assert calls == Counter(check_runs=1)
    assert not (tmp_path / "never.db").exists()
