"""``python -m collect`` fails fast with one line: checks of the spec by --dry-run, an unreachable tracking server, a
read-only store. In-process (``collect.cli.main``), so each takes well under a second once torch is imported."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from collect.cli import main
from tests.collect.test_data import make_cifar_folder, make_idx_folder
from tests.collect.test_executors import CLI_SPEC

# one configuration on DATASET computing MEASURES
SPEC = (CLI_SPEC.split("[grid]")[0].replace('name = "fault-cli"', 'name = "cli"').replace('measures = ["margins"]', "measures = MEASURES")
        .replace('dataset = "digits"', 'dataset = "DATASET"').replace("n_train = 300", "n_train = 100").replace("max_epochs = 40", "max_epochs = 1"))


def spec_file(folder: Path, measures: str = '["margins"]', dataset: str = "digits", extra: str = "", **data: object) -> Path:
    text = SPEC.replace("MEASURES", measures).replace("DATASET", dataset)
    for key, value in data.items():
        text = text.replace("[base.data]\n", f"[base.data]\n{key} = {value}\n") if f"\n{key} =" not in text else \
            "\n".join(f"{key} = {value}" if line.startswith(f"{key} =") else line for line in text.splitlines())
    path = folder / "spec.toml"
    path.write_text(extra + text)
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str, float]:
    started = time.perf_counter()
    code = main(list(argv))
    seconds = time.perf_counter() - started
    out, err = capsys.readouterr()
    return code, out, err, seconds


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------ --dry-run checks everything it can


@pytest.mark.parametrize("dataset, sizes, expected", [
    ("digits", {"n_train": 1800}, "1800 + 40 + 0 = 1840 exceeds the 1797 examples of digits"),
    ("mnist", {"n_train": 5000, "attack_size": 1000}, "5000 + 40 + 1000 = 6040 exceeds the 5000 examples of mnist"),
    ("digits", {"binary": "[3, 5]", "n_train": 330}, "exceeds the 365 examples of digits after data.binary = (3, 5)"),
    ("boolean", {"n_train": 100}, "100 + 40 + 0 = 140 exceeds the 128"),
])
def test_dry_run_rejects_splits_larger_than_the_built_in_datasets(tmp_path, capsys, dataset, sizes, expected):
    spec = spec_file(tmp_path, dataset=dataset, **sizes)
    code, out, err, _ = run_cli(capsys, "--config", str(spec), "--dry-run")
    line = one_error_line(err)
    assert code == 2 and expected in line and str(spec) in line and "run 'base' seed=0" in line
    assert out == ""  # nothing listed as if it could run


def test_dry_run_reads_local_folders_for_their_counts(tmp_path, capsys):
    idx = make_idx_folder(tmp_path / "idx", gz=True)  # 60 training, 30 test images
    spec = spec_file(tmp_path, dataset=f"idx:{idx}", n_train=50, attack_size=11)
    assert "n_train + attack_size = 50 + 11 = 61 exceeds the 60 training examples" in one_error_line(run_cli(capsys, "--config", str(spec), "--dry-run")[2])
    spec = spec_file(tmp_path, dataset=f"idx:{idx}", n_train=50, n_test=30)
    assert run_cli(capsys, "--config", str(spec), "--dry-run")[0] == 0
    cifar = make_cifar_folder(tmp_path / "cifar", per_batch=12, n_test=20)  # 60 training, 20 test images
    spec = spec_file(tmp_path, dataset=f"cifar10:{cifar}", n_train=50, n_test=21)
    assert "data.n_test = 21 exceeds the 20 test examples" in one_error_line(run_cli(capsys, "--config", str(spec), "--dry-run")[2])
    spec = spec_file(tmp_path, dataset=f"idx:{tmp_path / 'nowhere'}")
    assert "IDX folder" in one_error_line(run_cli(capsys, "--config", str(spec), "--dry-run")[2])


@pytest.mark.parametrize("measures, extra, expected", [
    ('["margins"]', 'curve_measures = ["margins", "sharpnes"]\n', "curve_measures[1]: unknown measure 'sharpnes'"),
    ('[{name = "margins", options = {split = 3}}]', "", "option margins.split = 3: expected a string"),
    ('[{name = "hessian_trace", options = {n_samples = "all"}}]', "", "option hessian_trace.n_samples = 'all'"),
    ('[{name = "margins", options = {splt = "test"}}]', "", "measure 'margins' has no option(s) ['splt']"),
])
def test_dry_run_rejects_bad_measures_and_options(tmp_path, capsys, measures, extra, expected):
    spec = spec_file(tmp_path, measures=measures, extra=extra)
    code, _, err, _ = run_cli(capsys, "--config", str(spec), "--dry-run")
    assert code == 2 and expected in one_error_line(err)


def test_dry_run_warns_that_log_volume_is_skipped_on_a_multi_class_task(tmp_path, capsys):
    spec = spec_file(tmp_path, measures='["margins", "log_volume"]')
    code, out, err, _ = run_cli(capsys, "--config", str(spec), "--dry-run")
    assert code == 0 and "1 runs in sweep 'cli'; checks passed" in out
    assert "warning: log_volume needs a binary task and will be skipped in 1 of 1 runs" in err
    spec = spec_file(tmp_path, measures='["margins", "log_volume"]', binary='"low_high"')
    code, _, err, _ = run_cli(capsys, "--config", str(spec), "--dry-run")
    assert code == 0 and "warning" not in err


def test_spec_errors_name_the_file_and_give_the_fix(tmp_path, capsys):
    spec = spec_file(tmp_path, extra='seeds = "0,1"\n')
    spec.write_text(spec.read_text().replace("seeds = [0]\n", ""))
    line = one_error_line(run_cli(capsys, "--config", str(spec), "--dry-run")[2])
    assert str(spec) in line and "seeds = '0,1' is a string" in line and "seeds = [0, 1]" in line
    spec = spec_file(tmp_path)
    spec.write_text(spec.read_text().replace("lr = 0.1", 'lr = "fast"'))
    line = one_error_line(run_cli(capsys, "--config", str(spec), "--dry-run")[2])
    assert line == f"error: {spec}: base: optim.lr = 'fast': expected a number"
    spec.write_text(spec.read_text().replace('lr = "fast"', "lr = 0.1") + '[scales.smoke]\nbase = {"data" = {"n_train" = 5}}\n')
    line = one_error_line(run_cli(capsys, "--config", str(spec), "--scale", "smoke", "--dry-run")[2])
    assert line.startswith(f"error: {spec}: scales.smoke.base")


# ------------------------------------------------------------------ unusable stores fail fast, with one line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracking_server_fails_within_15_s_with_the_fix(tmp_path, capsys):
    port = free_port()  # nothing listens there
    code, _, err, seconds = run_cli(capsys, "--config", str(spec_file(tmp_path)), "--tracking-uri", f"http://127.0.0.1:{port}")
    line = one_error_line(err)
    assert code == 2 and seconds < 15, seconds
    assert line.startswith(f"error: cannot reach the MLflow tracking server at http://127.0.0.1:{port}: connection refused; "
                           "start it with `mlflow server")
    assert line.endswith("or pass --tracking-uri")
    with capsys.disabled():
        print(f"unreachable tracking server reported in {seconds:.3f} s")


@contextlib.contextmanager
def unprivileged():
    """Permission bits bind only a non-root user: as root, act as 'nobody' (effective uid) inside the block."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def open_folder():
    """A folder every user can enter (pytest's tmp_path is private to root when the tests run as root)."""
    folder = Path(tempfile.mkdtemp(prefix="flatlas-ro-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755)
    shutil.rmtree(folder)


def test_read_only_or_missing_store_folder_and_read_only_database_fail_within_5_s(open_folder, mlflow_template, tmp_path, capsys):
    spec = spec_file(tmp_path)
    ro = open_folder / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    writable = open_folder / "rw"
    writable.mkdir()
    writable.chmod(0o777)
    db = writable / "mlflow.db"
    shutil.copy(mlflow_template, db)
    db.chmod(0o444)
    cases = [
        (f"sqlite:///{ro}/mlflow.db", f"the store folder {ro} is not writable: Permission denied"),
        (f"sqlite:///{ro}/new/mlflow.db", f"cannot create the store folder {ro}/new: Permission denied"),
        (f"sqlite:///{db}", f"the store {db} is not writable: Permission denied"),
    ]
    for uri, expected in cases:
        with unprivileged():
            code, _, err, seconds = run_cli(capsys, "--config", str(spec), "--tracking-uri", uri)
        line = one_error_line(err)
        assert code == 2 and seconds < 5 and expected in line, (line, seconds)
        with capsys.disabled():
            print(f"{uri}: reported in {seconds:.3f} s")
        assert "--tracking-uri sqlite:///WRITABLE/PATH/mlflow.db" in line


def test_unexpected_errors_are_one_line_unless_debug(tmp_path, capsys, monkeypatch):
    import collect.runner

    def broken(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(collect.runner, "run_sweep", broken)
    argv = ["--config", str(spec_file(tmp_path)), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "--workers", "1"]
    code, _, err, _ = run_cli(capsys, *argv)
    assert code == 1 and err.splitlines() == ["error: OSError: disk on fire", "(re-run with --debug for the traceback)"]
    with pytest.raises(OSError, match="disk on fire"):
        main([*argv, "--debug"])
