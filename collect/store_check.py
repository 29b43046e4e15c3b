"""One probe for every tracking store: fail fast, with one line, on a store that cannot work, before anything slow.

``check_store`` runs before torch and MLflow are imported (standard library only), in ``python -m collect`` and in
``python -m analyze``:

- a URI scheme MLflow has no store for (``foo://``): the line names the supported ones (``SUPPORTED_SCHEMES``);
- ``http(s)://``: one MLflow REST call (``GET <uri>/api/2.0/mlflow/experiments/search?max_results=1``) must answer
  with MLflow's JSON within ``PROBE_TIMEOUT_S``; otherwise the line says what answered instead (connection refused,
  no answer, an HTTP status and content type from some other web server, a login page);
- ``sqlite:///PATH``: a directory, a file that is not a SQLite database, a truncated file (shorter than its header
  declares), a corrupt one (``PRAGMA quick_check`` on a read-only connection) and a SQLite database of another
  program each get their own line; for writing (``collect``) the folder and file must also take a real write (root
  ignores permission bits but not a read-only file system).

Every failure is a ``StoreError`` whose message names the store and the fix; the command exits with code 2.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sqlite3
import tempfile
from pathlib import Path
from urllib.parse import quote, urlparse

DEFAULT_TRACKING_URI = "sqlite:///data/mlflow.db"

PROBE_TIMEOUT_S = 10.0  # a tracking server that does not answer is reported within this (bound: 15 s)
SQLITE_BUSY_S = 2.0  # how long the read-only check waits for a writer's lock before leaving the file to MLflow
# PRAGMA quick_check reads every page (1.9 s for a 212 MB file on the loaded 2-core development machine); a larger
# store gets the header, size and schema checks only, so that no command start-up grows with the store.
QUICK_CHECK_MAX_BYTES = 128 * 2**20
PROBE_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"
# Schemes of the tracking stores MLflow 3 registers (``mlflow.tracking._tracking_service.utils``); "" is a plain path
# (a local ``mlruns`` folder). A database URI may name its driver: ``postgresql+psycopg2://``.
SUPPORTED_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file", "databricks", "databricks-uc", "uc")
SUPPORTED_HINT = ("sqlite:///PATH/mlflow.db (the default is sqlite:///data/mlflow.db), http(s)://HOST:PORT (an MLflow "
                  "tracking server), postgresql://, mysql://, mssql:// (a database MLflow manages), file:///PATH (an "
                  "mlruns folder), databricks")
SQLITE_HEADER = b"SQLite format 3\x00"
MLFLOW_TABLES = {"experiments", "runs"}
NEW_STORE_HINT = "--tracking-uri sqlite:///WRITABLE/PATH/mlflow.db"


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


def uri_scheme(uri: str) -> str:
    """The store kind of a tracking URI: ``sqlite``, ``http``, ``postgresql`` (also for ``postgresql+psycopg2``), ...;
    ``""`` for a plain path (a one-letter scheme is a Windows drive)."""
    scheme, sep, _ = uri.partition("://")
    if not sep:
        scheme = uri.partition(":")[0] if ":" in uri and not os.path.isabs(uri) else ""
    scheme = scheme.lower().partition("+")[0]
    return "" if len(scheme) == 1 else scheme


def check_store(uri: str, timeout: float = PROBE_TIMEOUT_S, write: bool = True) -> None:
    """Raise ``StoreError`` (one line: the store, what is wrong, the fix) for a store that cannot work.

    ``write``: the command will write to the store (``collect``); ``analyze`` only reads, and a SQLite file that does
    not exist is then left to its own message."""
    scheme = uri_scheme(uri)
    if scheme not in SUPPORTED_SCHEMES and scheme != "":
        raise StoreError(f"tracking URI {uri!r}: unknown scheme '{scheme}', MLflow has no store for it; supported: "
                         f"{SUPPORTED_HINT}")
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path is None:
            raise StoreError(f"tracking URI {uri!r}: a SQLite store is written sqlite:///PATH (three slashes, then a "
                             "relative path, or four for an absolute one), e.g. sqlite:///data/mlflow.db")
        check_sqlite_store(path, write)
    elif scheme in ("http", "https"):
        probe_server(uri, timeout)


# What a failed write says when the store, not the configuration, cannot take it (SQLite, the OS, a server's
# SQLAlchemy error passed on), and the words the one line uses for it.
WRITE_FAILURES = {
    "database or disk is full": "the disk is full",
    "No space left on device": "the disk is full",
    "Disk quota exceeded": "the disk quota is exceeded",
    "Read-only file system": "the file system became read-only",
    "attempt to write a readonly database": "the database became read-only",
    "disk I/O error": "a disk I/O error",
}


def write_failure(reason: str) -> str | None:
    """What failed, in words (``WRITE_FAILURES``), when ``reason`` says the store could not take a write; else None."""
    return next((words for marker, words in WRITE_FAILURES.items() if marker in (reason or "")), None)


def write_failure_error(uri: str, reason: str) -> StoreError | None:
    """The one-line ``StoreError`` for a write the store ``uri`` could not take (``write_failure``), else None."""
    words = write_failure(reason)
    if words is None:
        return None
    detail = next((line.strip() for line in reason.splitlines() if any(m in line for m in WRITE_FAILURES)), "")
    return StoreError(f"the store {uri} could not take a write: {words} ({detail[:160]}); runs finished before are kept, "
                      "the runs in flight were not finished and are re-run next time; free space (or fix the store) and "
                      "re-run the same command to resume")


# ---------------------------------------------------------------------------------------------------- SQLite


def check_sqlite_store(path: Path, write: bool = True) -> None:
    """A SQLite store file that MLflow can open: not a directory, a SQLite database, complete, not corrupt, MLflow's
    (or empty: a new store); with ``write``, its folder and file also take a real write."""
    if path.is_dir():
        raise StoreError(f"the store {path.resolve()} is a directory, not a database file; give the database file "
                         f"inside it, e.g. --tracking-uri sqlite:///{(path / 'mlflow.db').as_posix()}")
    if path.exists():
        check_sqlite_file(path)
    if write:
        _check_sqlite_writable(path)


def check_sqlite_file(path: Path) -> None:
    """Header, declared size, ``PRAGMA quick_check`` (files up to ``QUICK_CHECK_MAX_BYTES``) and the table names of
    an existing file, read-only.

    SQLite's file format: the first 16 bytes are ``SQLite format 3\\0``; bytes 16-17 give the page size (1 means
    65536) and bytes 28-31 the page count, valid when bytes 24-27 equal bytes 92-95; a file shorter than
    page size x page count lost its end. An empty file is a new database (MLflow creates the schema)."""
    where = path.resolve()
    fix = f"restore it from a backup, or pass a new file with {NEW_STORE_HINT}"
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
        size = path.stat().st_size
    except OSError as exc:
        raise StoreError(f"the store {where} cannot be read: {exc.strerror or exc}; grant read permission or pass "
                         f"{NEW_STORE_HINT}") from None
    if size == 0:
        return
    if len(header) < 100 or not header.startswith(SQLITE_HEADER):
        raise StoreError(f"the store {where} is not a SQLite database (it does not start with the SQLite header: "
                         f"{header[:16]!r}); pass the path of an MLflow SQLite store or a new file name with {NEW_STORE_HINT}")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if header[24:28] == header[92:96] and pages and size < page_size * pages:
        raise StoreError(f"the store {where} is truncated: its header declares {pages} pages of {page_size} bytes "
                         f"({page_size * pages} bytes) but the file has {size}; {fix}")
    try:
        con = sqlite3.connect(f"file:{quote(str(where))}?mode=ro", uri=True, timeout=SQLITE_BUSY_S)
        try:
            verdict = [row[0] for row in con.execute("PRAGMA quick_check(3)")] if size <= QUICK_CHECK_MAX_BYTES else ["ok"]
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return  # a writer holds it (another invocation): it is a working database
        raise StoreError(f"the store {where} cannot be opened as a SQLite database: {exc}; {fix}") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"the store {where} is corrupt ({exc}); {fix}") from None
    if verdict != ["ok"]:
        raise StoreError(f"the store {where} is corrupt (PRAGMA quick_check: {'; '.join(map(str, verdict))}); {fix}")
    if tables and not MLFLOW_TABLES <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(f"the store {where} is a SQLite database of another program (tables: {shown}), not an MLflow "
                         f"store; pass an MLflow store or a new file name with {NEW_STORE_HINT}")


def _check_sqlite_writable(path: Path) -> None:
    folder = path.parent.resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the store folder {folder}: {exc.strerror or exc}; create it with write permission "
                         f"or pass {NEW_STORE_HINT}") from None
    try:  # a real write, not os.access: root ignores permission bits, but not a read-only file system
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise StoreError(f"the store folder {folder} is not writable: {exc.strerror or exc} (SQLite writes its journal and "
                         f"the artifacts beside the database); grant write permission (chmod u+w {folder}) or pass "
                         f"{NEW_STORE_HINT}") from None
    if path.exists():
        try:
            open(path, "r+b").close()
        except OSError as exc:
            raise StoreError(f"the store {path.resolve()} is not writable: {exc.strerror or exc}; grant write permission "
                             f"(chmod u+w {path}) or pass {NEW_STORE_HINT}") from None


# ---------------------------------------------------------------------------------------------------- a server


def probe_server(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """One MLflow REST call, ``GET <uri>/api/2.0/mlflow/experiments/search?max_results=1``, must return HTTP 200 with
    a JSON object (MLflow's answer) within ``timeout`` seconds; MLflow's own client would retry for minutes first.

    Credentials MLflow's client would send (``MLFLOW_TRACKING_TOKEN``, or ``MLFLOW_TRACKING_USERNAME`` and
    ``MLFLOW_TRACKING_PASSWORD``) are sent too."""
    import urllib.error
    import urllib.request

    parsed = urlparse(uri)
    hint = (f"start it with `mlflow server --backend-store-uri sqlite:///data/mlflow.db --host {parsed.hostname or '127.0.0.1'} "
            f"--port {parsed.port or 5000}` or pass --tracking-uri")
    request = urllib.request.Request(uri.rstrip("/") + PROBE_PATH, headers={"Accept": "application/json", **_auth_headers()})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status, headers, body = answer.status, answer.headers, answer.read(65536)
    except urllib.error.HTTPError as exc:
        status, headers, body = exc.code, exc.headers, _read_quietly(exc)
    except urllib.error.URLError as exc:
        raise StoreError(f"cannot reach the MLflow tracking server at {uri}: {_why(exc.reason, timeout, parsed)}; {hint}") from None
    except (OSError, ValueError) as exc:  # a timeout or reset while reading the answer; a malformed URL
        raise StoreError(f"cannot reach the MLflow tracking server at {uri}: {_why(exc, timeout, parsed)}; {hint}") from None
    if status == 200 and _is_json_object(body):
        return
    raise StoreError(f"{uri} is not an MLflow tracking server: GET {PROBE_PATH.split('?')[0]} answered "
                     f"{_describe_answer(status, headers, body)}; {_fix_for(status)}")


def _auth_headers() -> dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def _read_quietly(answer) -> bytes:
    try:
        return answer.read(65536)
    except OSError:
        return b""


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body or b"{}"), dict)
    except ValueError:
        return False


def _describe_answer(status: int, headers, body: bytes) -> str:
    """``HTTP 501 with an HTML page (server: SimpleHTTP/0.6 Python/3.12.3)``: what a foreign server said."""
    kind = (headers.get("Content-Type") or "no content type").split(";")[0].strip() if headers else "no content type"
    text = body.lstrip()[:200].lower()
    if text.startswith((b"<!doctype html", b"<html")) or kind == "text/html":
        what = "an HTML page"
        title = body.split(b"<title>", 1)[1].split(b"</title>", 1)[0] if b"<title>" in body else b""
        if title.strip():
            what += f" titled {title.strip().decode('utf-8', 'replace')[:60]!r}"
    elif status == 200:
        what = f"{kind}, not MLflow's JSON"
    else:
        what = kind
    server = headers.get("Server") if headers else None
    return f"HTTP {status} with {what}" + (f" (server: {server})" if server else "")


def _fix_for(status: int) -> str:
    if status in (401, 403):
        return ("the server wants credentials: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
                "MLFLOW_TRACKING_TOKEN), or pass --tracking-uri")
    return "check the host, port and path of --tracking-uri (an MLflow server's address, e.g. http://HOST:5000)"


def _why(reason: object, timeout: float, parsed) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:.0f} s"
    if isinstance(reason, socket.gaierror):
        return f"unknown host {parsed.hostname!r}"
    return str(getattr(reason, "strerror", None) or reason)
