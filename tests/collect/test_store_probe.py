"""One probe for every store: each unusable store is one line and exit code 2, within 15 s and before torch is
imported, from ``python -m collect`` and from ``python -m analyze`` alike.

"Before torch" is measured by the import order, not by time: the command runs in a fresh interpreter, which
reports at the point of failure whether torch is in ``sys.modules`` (a module once imported stays there). polars
looks torch up with ``importlib.util.find_spec`` without importing it, so a finder that refuses torch cannot be used.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.collect.test_spec_values import SPEC

REPO = Path(__file__).resolve().parents[2]
RUNNER = """
import sys
module = sys.argv[1]
main = __import__(module, fromlist=["main"]).main
try:
    code = main(sys.argv[2:])
finally:  # the point of failure: nothing unloads a module, so torch absent here was never imported
    print("torch loaded:", "torch" in sys.modules)
sys.exit(code)
"""


def run(module: str, *argv: str, cwd: Path = REPO) -> tuple[int, str, str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUNNER, module, *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - started


def check_one_line(code: int, out: str, err: str, seconds: float, expected: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, (code, err)
    assert expected in lines[0], lines[0]
    assert "torch loaded: False" in out, out
    assert seconds < 15, seconds
    return lines[0]


def bad_stores(folder: Path, template: Path) -> dict[str, tuple[str, str]]:
    """{case: (tracking URI, what its line must say)} for each SQLite store that cannot work."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "folder.db").mkdir()
    (folder / "text.db").write_text("name,value\nlr,0.1\n" * 20)
    whole = template.read_bytes()
    (folder / "truncated.db").write_bytes(whole[: len(whole) // 2])
    (folder / "corrupt.db").write_bytes(whole[:8192] + bytes(range(256)) * ((len(whole) - 8192) // 256))
    import sqlite3

    con = sqlite3.connect(folder / "other.db")
    con.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
    con.commit()
    con.close()
    return {
        "directory": (f"sqlite:///{folder / 'folder.db'}", f"{folder / 'folder.db'} is a directory, not a database file"),
        "not a database": (f"sqlite:///{folder / 'text.db'}", f"{folder / 'text.db'} is not a SQLite database"),
        "truncated": (f"sqlite:///{folder / 'truncated.db'}", f"{folder / 'truncated.db'} is truncated: its header declares"),
        "corrupt": (f"sqlite:///{folder / 'corrupt.db'}", f"{folder / 'corrupt.db'} is corrupt"),
        "another program's": (f"sqlite:///{folder / 'other.db'}", "is a SQLite database of another program (tables: invoices)"),
        "unknown scheme": ("foo://somewhere/store", "unknown scheme 'foo', MLflow has no store for it; supported: sqlite:///"),
    }


class ForeignHandler(http.server.BaseHTTPRequestHandler):
    """A web server that is not MLflow: every request gets 501 and an HTML page."""

    def do_GET(self):  # noqa: N802 - http.server's name
        body = b"<!DOCTYPE HTML><html><head><title>Unsupported method</title></head><body>501</body></html>"
        self.send_response(501)
        self.send_header("Content-Type", "text/html;charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def foreign_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ForeignHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def silent_server():
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.mark.parametrize("module", ["collect.cli", "analyze.cli"])
def test_each_bad_sqlite_store_and_scheme_is_one_line_exit_2_before_torch(module, mlflow_template, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    for case, (uri, expected) in bad_stores(tmp_path / "stores", mlflow_template).items():
        argv = ["--config", str(spec), "--tracking-uri", uri] if module == "collect.cli" else ["rank", "--tracking-uri", uri]
        code, out, err, seconds = run(module, *argv)
        line = check_one_line(code, out, err, seconds, expected)
        print(f"{module} {case}: {seconds:.2f} s: {line}")


@pytest.mark.parametrize("module", ["collect.cli", "analyze.cli"])
def test_a_web_server_that_is_not_mlflow_is_named_for_what_it_is(module, foreign_server, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    argv = ["--config", str(spec), "--tracking-uri", foreign_server] if module == "collect.cli" else ["rank", "--tracking-uri", foreign_server]
    code, out, err, seconds = run(module, *argv)
    line = check_one_line(code, out, err, seconds, f"{foreign_server} is not an MLflow tracking server: GET "
                          "/api/2.0/mlflow/experiments/search answered HTTP 501 with an HTML page titled 'Unsupported method'")
    assert "check the host, port and path of --tracking-uri" in line
    print(f"{module} foreign web server: {seconds:.2f} s")


def test_a_server_that_never_answers_is_reported_after_the_probe_timeout(silent_server, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    code, out, err, seconds = run("collect.cli", "--config", str(spec), "--tracking-uri", silent_server)
    check_one_line(code, out, err, seconds, f"cannot reach the MLflow tracking server at {silent_server}: no answer within 10 s")
    print(f"silent server: {seconds:.2f} s")


def test_a_good_store_passes_the_probe_read_only_and_unchanged(mlflow_template, tmp_path):
    from collect.store_check import check_store

    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template, db)
    before = db.read_bytes()
    check_store(f"sqlite:///{db}", write=False)
    check_store(f"sqlite:///{db}")
    check_store(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}")  # a new store: its folder is created, nothing else
    (tmp_path / "empty.db").write_bytes(b"")
    check_store(f"sqlite:///{tmp_path / 'empty.db'}")  # an empty file is a new database
    assert db.read_bytes() == before and not (tmp_path / "new" / "mlflow.db").exists()


@pytest.mark.parametrize("uri, scheme", [
    ("sqlite:///data/mlflow.db", "sqlite"), ("http://h:5000", "http"), ("postgresql+psycopg2://u@h/db", "postgresql"),
    ("./mlruns", ""), ("/abs/mlruns", ""), ("file:///abs/mlruns", "file"), ("FOO://x", "foo"),
])
def test_uri_scheme(uri, scheme):
    from collect.store_check import uri_scheme

    assert uri_scheme(uri) == scheme
