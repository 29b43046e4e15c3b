"""Benchmark of ``python -m analyze rank --ledger big.csv`` (1,000 BCa bootstrap resamples, the default) on generated
ledgers of 30 measures, the chunked bootstrap against the unchunked one (commit ca25bd5), side by side.

Run by hand from the repository root: ``python tests/benchmarks/bench_bootstrap.py`` (``--runs 80000`` is the
issue's ledger; ``--old-runs`` sets the size at which the old code also runs — it needed > 300 s and 6.8 GB at
80,000 runs, so by default it is compared at 10,000). Each measurement is one ``python -m analyze rank`` subprocess:
wall seconds, CPU seconds (user + system, what it costs on an uncontended machine) and peak resident memory from
``os.wait4``. Targets: ≤ 120 s and ≤ 2 GB at 80,000 runs. The machine's load average is printed, since
other processes share the cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.analyze.synthetic import benchmark_ledger  # noqa: E402

OLD_COMMIT = "ca25bd5"


def measure(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, float | str]:
    """Wall, CPU and peak RSS of one subprocess (killed after ``timeout`` seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=False)
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            return {"wall": time.perf_counter() - start, "cpu": usage.ru_utime + usage.ru_stime,
                    "peak_gb": usage.ru_maxrss / 2**20, "status": f"killed after {timeout:.0f} s"}
        time.sleep(0.2)
    wall = time.perf_counter() - start
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    ok = os.waitstatus_to_exitcode(status) == 0
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_gb": usage.ru_maxrss / 2**20,
            "status": "ok" if ok else "failed: " + out.strip().splitlines()[-1] if out.strip() else "failed", "out": out}


def old_tree(tmp: Path) -> Path:
    """A copy of analyze/ with the bootstrap module of OLD_COMMIT (collect/ still comes from the worktree)."""
    dst = tmp / "old"
    shutil.copytree(ROOT / "analyze", dst / "analyze", ignore=shutil.ignore_patterns("__pycache__"))
    src = subprocess.run(["git", "show", f"{OLD_COMMIT}:analyze/stats/bootstrap.py"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    (dst / "analyze" / "stats" / "bootstrap.py").write_text(src)
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=80_000, help="runs in the big ledger (default 80,000)")
    parser.add_argument("--old-runs", type=int, default=10_000, help="ledger size at which old and new run side by side")
    parser.add_argument("--old-timeout", type=float, default=900, help="seconds before the old code is stopped")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        old = old_tree(tmp)
        env_new = {**os.environ, "PYTHONPATH": str(ROOT)}
        env_old = {**os.environ, "PYTHONPATH": f"{old}{os.pathsep}{ROOT}"}
        rows = []
        for n, versions in ((args.old_runs, ("old", "new")), (args.runs, ("new",))):
            ledger = tmp / f"ledger_{n}.csv"
            benchmark_ledger(n_runs=n, n_measures=30).write_csv(ledger)
            print(f"ledger {n:,} runs x 30 measures: {ledger.stat().st_size / 1e6:.0f} MB")
            # every run a draw: the bootstrap itself is what is timed, not the per-configuration means
            cmd = [sys.executable, "-m", "analyze", "rank", "--ledger", str(ledger), "--resamples", str(args.resamples),
                   "--no-seed-means"]
            results = {}
            for version in versions:
                env = env_old if version == "old" else env_new
                results[version] = measure(cmd, env, args.old_timeout if version == "old" else 3600)
                r = results[version]
                print(f"  {version}: {r['wall']:7.1f} s wall  {r['cpu']:7.1f} s CPU  {r['peak_gb']:5.2f} GB peak  {r['status']}",
                      flush=True)
                rows.append((n, version, r))
            if "old" in results and results["old"]["status"] == "ok":
                o, w = results["old"], results["new"]
                same = _ci_lines(o.get("out", "")) == _ci_lines(w.get("out", ""))
                print(f"  new vs old: {o['wall'] / w['wall']:.1f}x wall, {o['cpu'] / w['cpu']:.1f}x CPU, "
                      f"{o['peak_gb'] / w['peak_gb']:.1f}x less memory; printed ranking identical: {same}")
        big = next(r for n, v, r in rows if n == args.runs and v == "new")
        print(f"target at {args.runs:,} runs (<= 120 s wall, <= 2 GB): wall {'PASS' if big['wall'] <= 120 else 'FAIL'}"
              f" ({big['wall']:.0f} s), CPU {big['cpu']:.0f} s, memory {'PASS' if big['peak_gb'] <= 2 else 'FAIL'}"
              f" ({big['peak_gb']:.2f} GB)")
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def _ci_lines(out: str) -> list[str]:
    """The printed table rows (timing lines excluded)."""
    return [line for line in out.splitlines() if "seconds" not in line and "took" not in line]


if __name__ == "__main__":
    main()
