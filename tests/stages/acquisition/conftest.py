"""Fixtures of the source-reader tests: a JSON HTTP server and a PostgreSQL server, both on 127.0.0.1."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from stages.acquire import parse_sources
from stages.acquisition import http as http_module
from stages.acquisition.base import ReadContext, SourceBatch
from stages.acquisition.registry import READERS

# A route returns (status, headers, body); a dict or list body is sent as JSON, a str as it is.
Response = tuple[int, dict[str, str], Any]
Route = Callable[[dict[str, str], dict[str, str]], Response]


@dataclass
class RecordedRequest:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class JsonServer:
    """A local HTTP server whose routes the test sets; it records every request it receives."""

    base_url: str
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]


def _handler(server: JsonServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {
                name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()
            }
            headers = {name: value for name, value in self.headers.items()}
            server.requests.append(RecordedRequest(parts.path, query, headers))
            route = server.routes.get(parts.path)
            if route is None:
                status, extra_headers, body = 404, {}, {"error": "not found"}
            else:
                status, extra_headers, body = route(query, headers)
            payload = body if isinstance(body, str) else json.dumps(body)
            data = payload.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra_headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def json_server() -> Iterator[JsonServer]:
    """Serve JSON routes on 127.0.0.1 at a free port for one test."""
    state = JsonServer(base_url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def recorded_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Give the HTTP reader a fake clock that only sleeping advances; return the list of its waits.

    Retry and rate-limit waits then cost no time and are exact.
    """
    waits: list[float] = []
    now = [1000.0]

    def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(http_module, "sleep", fake_sleep)
    monkeypatch.setattr(http_module, "monotonic", lambda: now[0])
    return waits


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    port: int
    socket_dir: str
    bin_dir: Path
    run_as: list[str]

    def psql(self, sql: str, database: str = "postgres") -> None:
        command = [*self.run_as, str(self.bin_dir / "psql"), "-h", self.socket_dir, "-p", str(self.port)]
        command += ["-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)

    def url(self, user: str, database: str) -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"


def find_postgres_bin() -> Path | None:
    """Return the folder of initdb and pg_ctl: Debian keeps them in /usr/lib/postgresql/<version>/bin."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.insert(0, str(Path(on_path).resolve()))
    for candidate in candidates:
        folder = Path(candidate).parent
        if (folder / "pg_ctl").exists():
            return folder
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throw-away PostgreSQL cluster on 127.0.0.1 with password (SCRAM) login over TCP."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (initdb not found); install Debian's postgresql package")
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed")

    root = tempfile.mkdtemp(prefix="acquire-pg-")
    run_as: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root, so the cluster belongs to the postgres system user.
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without `runuser`, so initdb cannot run as another user")
        run_as = [runuser, "-u", "postgres", "--"]
        try:
            shutil.chown(root, user="postgres", group="postgres")
        except LookupError:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip("running as root and the `postgres` system user does not exist")
    data_dir, socket_dir, log_file = f"{root}/data", root, f"{root}/server.log"
    port = free_port()
    initdb = [
        *run_as,
        str(bin_dir / "initdb"),
        "-D",
        data_dir,
        "-U",
        "postgres",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "--no-sync",
    ]
    subprocess.run(initdb, check=True, capture_output=True, text=True, timeout=120)
    options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = [
        *run_as,
        str(bin_dir / "pg_ctl"),
        "-D",
        data_dir,
        "-l",
        log_file,
        "-o",
        options,
        "-w",
        "-t",
        "60",
        "start",
    ]
    subprocess.run(start, check=True, capture_output=True, text=True, timeout=120)
    server = PostgresServer(port=port, socket_dir=socket_dir, bin_dir=bin_dir, run_as=run_as)
    try:
        yield server
    finally:
        stop = [*run_as, str(bin_dir / "pg_ctl"), "-D", data_dir, "-m", "immediate", "-w", "stop"]
        subprocess.run(stop, check=False, capture_output=True, text=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def read_source() -> Callable[..., SourceBatch]:
    """Return a function that validates one raw source mapping and runs its reader."""

    def read(raw: dict[str, Any], snapshot_dir: Path | None = None, seed: int = 0) -> SourceBatch:
        config = parse_sources([raw])[0]
        _, reader = READERS[config.type]
        return reader(config, 0, ReadContext(seed=seed, snapshot_dir=snapshot_dir))

    return read
