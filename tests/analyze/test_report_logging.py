"""Which reports are attached to the sweep's parent run in MLflow: the sweep's own (default path, all runs), or any
report with ``--log-to-mlflow``; an ad-hoc report (``--out``, ``--where``) is not uploaded by default."""
from __future__ import annotations

import pytest

from analyze.cli import build_parser, is_sweep_report


@pytest.mark.parametrize(("argv", "own", "flag"), [
    (["report"], True, False),
    (["report", "--experiment", "quick"], True, False),
    (["report", "--out", "elsewhere.html"], False, False),
    (["report", "--where", "hp.optimizer=adam"], False, False),
    (["report", "--out", "elsewhere.html", "--log-to-mlflow"], False, True),
])
def test_only_the_sweeps_own_report_is_logged_by_default(argv: list[str], own: bool, flag: bool) -> None:
    args = build_parser().parse_args(argv)
    assert is_sweep_report(args) is own
    assert args.log_to_mlflow is flag
