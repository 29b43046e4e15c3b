"""CI cannot stay green while the browser tests skip: ``.ci/run`` fails without chromium and sets
FLATLAS_REQUIRE_BROWSER=1, under which the shared ``chromium_executable`` fixture fails instead of skipping; the
fixture finds chromium exactly as ``.ci/run`` does (``command -v chromium``).

``.ci/run`` is run for real under bash with stub ``python``, ``apt-get`` and ``chromium`` executables on a PATH
that holds nothing else, so no package is installed and no test suite starts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_BROWSER, browser_unavailable, find_chromium

CI_RUN = Path(__file__).resolve().parents[1] / ".ci" / "run"
BASH = shutil.which("bash")


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(0o755)


def _sandbox(tmp_path: Path, *, chromium: bool, apt_installs: bool) -> tuple[dict[str, str], Path]:
    """A PATH with only: dirname, a python stub logging its arguments and FLATLAS_REQUIRE_BROWSER, an apt-get stub
    that fails (or 'installs' a chromium stub), and optionally a chromium stub."""
    bin_dir, log = tmp_path / "bin", tmp_path / "python.log"
    bin_dir.mkdir(parents=True)
    os.symlink(shutil.which("dirname"), bin_dir / "dirname")
    _stub(bin_dir, "python", f'echo "$* | {REQUIRE_BROWSER}=${{{REQUIRE_BROWSER}:-unset}}" >> {log}')
    install = f'printf "#!{BASH}\\n" > {bin_dir}/chromium && chmod +x {bin_dir}/chromium' if apt_installs else "exit 100"
    _stub(bin_dir, "apt-get", f'[ "$1" = update ] && exit 0; {install}')
    if chromium:
        _stub(bin_dir, "chromium", "exit 0")
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    return env, log


def _ci(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([BASH, str(CI_RUN)], env=env, capture_output=True, text=True, timeout=60)


def test_ci_run_fails_when_chromium_cannot_be_installed(tmp_path):
    env, log = _sandbox(tmp_path, chromium=False, apt_installs=False)
    done = _ci(env)
    assert done.returncode != 0 and "chromium" in done.stderr
    assert "pytest" not in log.read_text()  # the tests never started


@pytest.mark.parametrize("present", [True, False], ids=["chromium-present", "installed-by-apt"])
def test_ci_run_runs_pytest_with_the_browser_required(tmp_path, present):
    env, log = _sandbox(tmp_path, chromium=present, apt_installs=True)
    done = _ci(env)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[-1] == f"-m pytest -q | {REQUIRE_BROWSER}=1"


def test_conftest_finds_chromium_as_ci_run_does(tmp_path, monkeypatch):
    for with_chromium in (True, False):
        env, _ = _sandbox(tmp_path / str(with_chromium), chromium=with_chromium, apt_installs=False)
        shell = subprocess.run([BASH, "-c", "command -v chromium"], env=env, capture_output=True, text=True).stdout.strip()
        monkeypatch.setenv("PATH", env["PATH"])
        found = find_chromium()
        assert (str(found) if found else "") == shell
        assert (found is not None) == with_chromium


def _outcome(reason: str) -> BaseException:
    """The exception ``browser_unavailable`` raises, caught here so that a skip cannot skip this test itself."""
    try:
        browser_unavailable(reason)
    except BaseException as exc:  # noqa: BLE001 - pytest's skip/fail outcomes derive from BaseException
        return exc
    raise AssertionError("browser_unavailable returned")


def test_missing_browser_skips_by_default_and_fails_when_required(monkeypatch):
    monkeypatch.delenv(REQUIRE_BROWSER, raising=False)
    assert type(_outcome("no chromium")) is pytest.skip.Exception
    monkeypatch.setenv(REQUIRE_BROWSER, "1")
    failed = _outcome("no chromium")
    assert type(failed) is pytest.fail.Exception and "no chromium" in str(failed)
