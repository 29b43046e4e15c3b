"""Fail fast, with one line, on a tracking store that cannot work, before anything slow starts.

A SQLite file or folder that cannot be written fails in well under a second naming the path and the permission
(a real write is tried: root ignores permission bits but not a read-only file system); a tracking server that does
not answer fails within ``PROBE_TIMEOUT_S`` (MLflow's own HTTP client retries for minutes first). Standard library
only, so that the check runs before torch and MLflow are imported.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

DEFAULT_TRACKING_URI = "sqlite:///data/mlflow.db"

PROBE_TIMEOUT_S = 10.0  # an unreachable tracking server is reported within this (the bound: 15 s)


def resolve_tracking_uri(flag: str | None = None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///data/mlflow.db`` (relative to the cwd)."""
    return flag or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


class StoreError(RuntimeError):
    """The tracking store cannot be used (unreachable server, read-only folder); the message names it and the fix."""


def check_store(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast, with one line, on a store that cannot work: a SQLite file or folder that cannot be written, or a
    tracking server that does not answer (MLflow's own HTTP client would retry for minutes first)."""
    path = sqlite_path(uri)
    if path is not None:
        _check_sqlite_writable(path)
    elif uri.startswith(("http://", "https://")):
        _probe_server(uri, timeout)


def _check_sqlite_writable(path: Path) -> None:
    folder = path.parent.resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the store folder {folder}: {exc.strerror or exc}; create it with write permission "
                         "or pass --tracking-uri sqlite:///WRITABLE/PATH/mlflow.db") from None
    try:  # a real write, not os.access: root ignores permission bits, but not a read-only file system
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise StoreError(f"the store folder {folder} is not writable: {exc.strerror or exc} (SQLite writes its journal and "
                         f"the artifacts beside the database); grant write permission (chmod u+w {folder}) or pass "
                         "--tracking-uri sqlite:///WRITABLE/PATH/mlflow.db") from None
    if path.exists():
        try:
            open(path, "r+b").close()
        except OSError as exc:
            raise StoreError(f"the store {path.resolve()} is not writable: {exc.strerror or exc}; grant write permission "
                             f"(chmod u+w {path}) or pass --tracking-uri sqlite:///WRITABLE/PATH/mlflow.db") from None


def _probe_server(uri: str, timeout: float) -> None:
    """GET ``<uri>/health``; any HTTP answer means something is listening (MLflow's API calls then report the rest)."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    hint = (f"start it with `mlflow server --backend-store-uri sqlite:///data/mlflow.db --host {parsed.hostname or '127.0.0.1'} "
            f"--port {parsed.port or 5000}` or pass --tracking-uri")
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
        return
    except urllib.error.HTTPError:
        return
    except urllib.error.URLError as exc:
        reason = exc.reason
    except OSError as exc:  # a timeout while reading the answer
        reason = exc
    if isinstance(reason, ConnectionRefusedError):
        why = "connection refused"
    elif isinstance(reason, (TimeoutError, socket.timeout)):
        why = f"no answer within {timeout:.0f} s"
    elif isinstance(reason, socket.gaierror):
        why = f"unknown host {parsed.hostname!r}"
    else:
        why = str(getattr(reason, "strerror", None) or reason)
    raise StoreError(f"cannot reach the MLflow tracking server at {uri}: {why}; {hint}")
