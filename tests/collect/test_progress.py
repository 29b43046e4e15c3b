"""Progress when stderr is not a terminal: `python -m collect 2>&1 | tee log` prints one line per
finished or failed run instead of tqdm's bar, which draws only on a terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SPEC = """
name = "progress"
measures = ["norms"]
[base]
data = { dataset = "digits", n_train = 40, n_test = 20 }
model = { arch = "fcn", width = 8, depth = 1 }
optim = { lr = 0.1, batch_size = 20 }
stop = { max_epochs = 1 }
[grid]
"optim.lr" = [0.1, 1e12]
"""


def test_one_line_per_run_when_stderr_is_a_pipe(mlflow_uri: str, tmp_path: Path) -> None:
    spec = tmp_path / "progress.toml"
    spec.write_text(SPEC)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "collect", "--config", str(spec), "--tracking-uri", mlflow_uri, "--workers", "1", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=240, env=env, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "sweep progress: 2 run(s) to do, 0 already finished"
    finished = [ln for ln in lines if re.fullmatch(r"\[\d/2\] done progress #0 \(base, seed=0\) \d+\.\d s, test_acc \d\.\d{3}", ln)]
    failed = [ln for ln in lines if re.fullmatch(r"\[\d/2\] FAILED progress #1 \(lr=\S+, seed=0\) \d+\.\d s: diverged: .+", ln)]
    assert len(finished) == 1 and len(failed) == 1, done.stderr
    assert "\r" not in done.stderr and "it/s" not in done.stderr  # no tqdm bar redrawn into the log


def test_progress_line_format() -> None:
    from collect.config import run_config_from_dict
    from collect.progress import progress_line
    from collect.runner import RunOutcome
    from collect.sweep import PlannedRun

    planned = PlannedRun(run_config_from_dict({"seed": 3, "stop": {"max_epochs": 1}}), "batch_size=500, dropout=0.5", {})
    ok = RunOutcome("h", "r", "FINISHED", seconds=3.14, metrics={"gen.test_acc": 0.8612})
    assert progress_line(12, 32, "quick", 11, planned, ok) == "[12/32] done quick #11 (batch_size=500, dropout=0.5, seed=3) 3.1 s, test_acc 0.861"
    bad = RunOutcome("h", "r", "FAILED", "diverged: loss nan\ntraceback ...", seconds=0.4)
    assert progress_line(13, 32, "quick", 12, planned, bad) == "[13/32] FAILED quick #12 (batch_size=500, dropout=0.5, seed=3) 0.4 s: diverged: loss nan"
