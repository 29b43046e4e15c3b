"""Imported first by the local executor's fork server (its preload list): the fork server dies with the driver.

The fork server is a child of the driver. It notices the driver's death on its own (its "alive" pipe reaches EOF),
but then shuts its interpreter down with torch and MLflow loaded, which took 7.6 s under load in
``tests/collect/test_concurrency.py``. Linux's ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` has the kernel kill it the
moment the driver dies instead. Importing this module anywhere else does nothing.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def in_fork_server() -> bool:
    """Whether this import runs inside ``multiprocessing.forkserver.main`` (the fork server preloading modules)."""
    frame = sys._getframe()
    while frame is not None:
        code = frame.f_code
        if code.co_name == "main" and code.co_filename.endswith(os.path.join("multiprocessing", "forkserver.py")):
            return True
        frame = frame.f_back
    return False


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when its parent exits; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() == 1:  # the parent died before the prctl took effect: this process was handed to init
        os.kill(os.getpid(), signal.SIGKILL)
    return True


if in_fork_server():
    die_with_parent()
