"""The workers' fork server: what it preloads, and that the driver's start-up leaves SciPy to it."""

from __future__ import annotations

import importlib
import subprocess
import sys

from collect.measures.registry import MEASURE_MODULES
from collect.worker_context import PRELOAD, start_worker_server


def test_every_preloaded_module_imports() -> None:
    """The fork server skips a preload that fails to import without a word; a misspelt name would silently make
    every worker pay that import itself."""
    for name in (*PRELOAD, *MEASURE_MODULES):
        importlib.import_module(name)


def test_the_driver_checks_a_spec_without_scipy_or_sklearn() -> None:
    """Checking a spec's measures imports every measure module; the SciPy and scikit-learn parts they use are
    imported on use (in workers, preloaded by the fork server), not by the driver."""
    code = ("import sys\n"
            "from collect.config import MeasureSpec\n"
            "from collect.measures.registry import check_measure_specs, registry\n"
            "registry()\n"
            "check_measure_specs([MeasureSpec('hessian_trace'), MeasureSpec('sharpness'), MeasureSpec('margins')])\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'sklearn'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_fork_server_for_a_single_worker() -> None:
    assert start_worker_server(1) is False
