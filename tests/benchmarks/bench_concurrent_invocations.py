"""Two ``python -m collect`` invocations of one sweep started together vs one invocation alone (run by hand).

Each invocation trains in its own process (``--workers 1``); the claim protocol (``collect.claims``) makes the two
split the configurations. Prints the wall time of one invocation, of two at once, their ratio, and how many
configurations each of the two trained. Both start from a fresh copy of one migrated SQLite store.

    python tests/benchmarks/bench_concurrent_invocations.py            # 8 configurations
    python tests/benchmarks/bench_concurrent_invocations.py --runs 16
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPEC = """
name = "bench-claims"
seeds = [0]
measures = ["margins", "norms"]
[base.data]
dataset = "digits"
n_train = 300
n_test = 100
[base.model]
arch = "fcn"
width = 32
depth = 2
[base.optim]
lr = 0.05
batch_size = 10
[base.stop]
max_epochs = 5
[grid]
"optim.lr" = LRS
"""


def invoke(spec: Path, uri: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "collect", "--config", str(spec), "--tracking-uri", uri, "--workers", "1",
                             "--no-progress", "--device", "cpu"], cwd=spec.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def timed(spec: Path, uris: list[str]) -> tuple[float, list[int]]:
    started = time.perf_counter()
    procs = [invoke(spec, uri) for uri in uris]
    outs = [p.communicate()[0] for p in procs]
    seconds = time.perf_counter() - started
    return seconds, [int(re.search(r": (\d+) finished", out).group(1)) for out in outs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from collect.tracking import ensure_store

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = root / "bench.toml"
        spec.write_text(SPEC.replace("LRS", str([round(0.01 + 0.01 * i, 3) for i in range(args.runs)])))
        template = root / "template.db"
        ensure_store(f"sqlite:///{template}")
        uris = []
        for name in ("alone", "together"):
            (root / name).mkdir()
            shutil.copy(template, root / name / "mlflow.db")
            uris.append(f"sqlite:///{root / name / 'mlflow.db'}")
        alone, trained_alone = timed(spec, uris[:1])
        together, trained = timed(spec, [uris[1], uris[1]])
    load = os.getloadavg()[0]
    print(f"{args.runs} configurations, load average {load:.1f} on {os.cpu_count()} cores")
    print(f"one invocation:            {alone:6.1f} s  trained {trained_alone}")
    print(f"two invocations at once:   {together:6.1f} s  trained {trained} (each configuration once: {sum(trained) == args.runs})")
    print(f"speed-up: {alone / together:.2f}x")


if __name__ == "__main__":
    main()
