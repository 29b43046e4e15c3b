"""What the CLI says about seeds is true per subcommand: the configuration-counting subcommands say they count
configurations, ``power`` and ``sign-error`` (which use every run) say nothing of the kind, and the report names the
two statistics that use every run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyze.cli import PER_RUN, counted_by, main
from tests.analyze.synthetic import synthetic_ledger


@pytest.fixture(scope="module")
def ledger_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seeds") / "ledger.csv"
    synthetic_ledger(seed=0, n_seeds=2, n_noise=1).write_csv(path)  # 24 configurations × 2 seeds
    return path


def test_rank_says_it_counts_configurations(ledger_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["rank", "--ledger", str(ledger_path), "--resamples", "0", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "48 finished runs are 24 configurations" in captured.err
    assert "every statistic of rank counts configurations" in captured.err
    assert json.loads(captured.out)["meta"]["configurations"]["configurations"] == 24


@pytest.mark.parametrize("command", PER_RUN)
def test_per_run_subcommands_do_not_claim_to_count_configurations(ledger_path: Path, command: str,
                                                                 capsys: pytest.CaptureFixture) -> None:
    assert main([command, "--ledger", str(ledger_path), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "counts configurations" not in captured.err
    assert json.loads(captured.out)["meta"]["configurations"] == {"seed_means": False,
                                                                  "not_averaged": f"{command} uses every run"}
    with pytest.raises(ValueError, match="uses every run"):
        counted_by(command)


def test_report_names_the_statistics_that_use_every_run(ledger_path: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r.html"
    assert main(["report", "--ledger", str(ledger_path), "--resamples", "20", "--out", str(out), "--no-per-sample",
                 "--sections", "verdict"]) == 0
    err = capsys.readouterr().err
    assert "every statistic except sign-error and the detectable effect (which use every run) counts configurations" in err
    assert "every statistic counts configurations" not in err
