"""Names are labels, never paths: ``safe_component`` on hostile names, and a hostile-name sweep and report that
write nothing outside the store's folder and ``reports/`` while MLflow keeps the name as given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from collect.names import safe_component

HOSTILE = ["../../x", "/etc/passwd", "a/b", "..", ".", "", ".hidden", "x\x00y\n\tz", "a%2e%2e%2fb", "C:\\Windows\\x",
           "~", "ü/ß", "a" * 300, "..\\..\\x", "name with spaces", "-rf"]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_name_becomes_one_plain_component(name, tmp_path):
    part = safe_component(name)
    assert part and part not in (".", "..") and not part.startswith(".")
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in part), part
    assert len(part) <= 100 + 1 + 8
    joined = (tmp_path / part).resolve()
    assert joined.parent == tmp_path.resolve()  # a single component under the folder it is joined to
    (tmp_path / part).write_text("ok")  # a legal file name on this file system


def test_plain_names_are_kept_and_different_names_stay_different():
    for name in ("quick", "study", "keskar-batch", "l2_sharper.v2", "a" * 100):
        assert safe_component(name) == name
    parts = [safe_component(n) for n in HOSTILE + ["a_b", "x", "etc_passwd"]]
    assert len(set(parts)) == len(parts)  # no two names share a component (a hash is appended to changed ones)


def test_importing_it_leaves_torch_unloaded():
    code = "import sys, collect.names, collect.store_check; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == "False"


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def test_a_hostile_sweep_and_its_report_write_only_inside_their_folders(mlflow_template, tmp_path, monkeypatch, capsys):
    """The sweep is named ``../../escaped/x``: its artifacts stay under the store's artifact folder, the report under
    ``reports/``; MLflow's experiment keeps the name."""
    import shutil

    from mlflow import MlflowClient

    from analyze.cli import main as analyze_main
    from collect.cli import main as collect_main
    from tests.collect.test_spec_values import SPEC

    work = tmp_path / "deep" / "work"
    store = work / "store"
    store.mkdir(parents=True)
    shutil.copy(mlflow_template, store / "mlflow.db")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    name = "../../escaped/x"
    spec = work / "spec.toml"
    spec.write_text(SPEC.replace('name = "values"', f'name = "{name}"').replace("width = 8", "width = 16")
                    .replace("max_epochs = 1", "max_epochs = 6") + '[grid]\n"optim.lr" = [0.1, 0.2]\n')  # runs that learn
    monkeypatch.chdir(work)
    before = files_under(tmp_path)
    assert collect_main(["--config", str(spec), "--tracking-uri", uri, "--no-progress", "--workers", "1"]) == 0
    assert "2 finished" in capsys.readouterr().out
    assert analyze_main(["report", "--tracking-uri", uri, "--resamples", "0", "--no-per-sample"]) == 0
    out = capsys.readouterr().out
    new = files_under(tmp_path) - before
    outside = [p for p in new if not (p.is_relative_to(store) or p.is_relative_to(work / "reports"))]
    assert not outside, outside
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "deep" / "escaped").exists()
    report = work / "reports" / f"{safe_component(name)}.html"
    assert report.is_file() and f"report written to {Path('reports') / report.name}" in out
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)  # the name is intact in MLflow
    assert exp is not None
    artifacts = Path(exp.artifact_location.removeprefix("file://"))
    assert artifacts.parent == (store / "mlflow_artifacts").resolve() and artifacts.name == safe_component(name)
    assert any(p.name == "config.json" for p in new if p.is_relative_to(artifacts))


def test_a_report_named_by_a_hostile_ledger_stays_in_reports(tmp_path, monkeypatch, capsys):
    import polars as pl

    from analyze.cli import main as analyze_main
    from tests.analyze.synthetic import synthetic_ledger

    name = "../../../tmp/evil\n/x"
    ledger = synthetic_ledger(seed=0).with_columns(pl.lit(name).alias("experiment"))
    (tmp_path / "work").mkdir()
    path = tmp_path / "work" / "ledger.csv"
    ledger.write_csv(path)
    monkeypatch.chdir(tmp_path / "work")
    before = files_under(tmp_path)
    assert analyze_main(["report", "--ledger", str(path), "--resamples", "0"]) == 0
    new = files_under(tmp_path) - before
    assert new == {tmp_path / "work" / "reports", tmp_path / "work" / "reports" / f"{safe_component(name)}.html"}
    assert os.path.basename(str(next(p for p in new if p.suffix == ".html"))).startswith("tmp_evil_x-")
