"""Edge limits through real `qkhyper serve` and `qkhyper static` processes on every backend.

Raw sockets on 127.0.0.1, since an HTTP client would not send these bytes.
Every wait has a deadline; a slow head is paced by waiting for the server's
answer (`select`) for at most a tenth of a second between bytes.
"""

from __future__ import annotations

import contextlib
import select
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.backends.harness import CL_TE, H2C, head_of_size, statuses, with_headers
from tests.conftest import (
    BACKENDS,
    DEADLINE,
    TESTS,
    Qkhyper,
    backend_env,
    clean_env,
    connect,
    exchange,
    free_port,
    read_to_close,
)

MAX_GROWTH = 8 * 1024 * 1024  # measured: 0.2-1.3 MiB with the limit; 38 MiB on uvicorn+httptools without it


@dataclass
class Server:
    process: Qkhyper
    port: int
    backend: str

    @property
    def pid(self) -> int:
        [pid] = self.process.pids("probe")
        return pid


def start_probe(
    runner: type[Qkhyper], folder: Path, backend: str, *, qkhyper: str = "", top: str = "", name: str = "hypercorn"
) -> Server:
    """`qkhyper serve` of tests/apps/probe.py from `folder/NAME.toml`, returned once it is ready."""
    port = free_port()
    config = folder / f"{name}.toml"
    lines = [top, "[qkhyper]", 'host = "127.0.0.1"', qkhyper, "[[qkhyper.apps]]", 'name = "probe"']
    config.write_text("\n".join([*lines, 'app = "apps.probe:app"', f"port = {port}"]) + "\n")
    args, env = backend_env(backend)
    server = Server(runner(["serve", "--config", str(config), *args], folder, clean_env(**env)), port, backend)
    server.process.wait_ready()
    return server


@pytest.fixture(scope="module", params=BACKENDS)
def probe(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per backend with the default limits, shared by the tests that need nothing else."""
    folder = tmp_path_factory.mktemp("edge")
    shutil.copytree(TESTS / "apps", folder / "apps")
    started: list[Qkhyper] = []

    class Tracked(Qkhyper):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    try:
        yield start_probe(Tracked, folder, request.param)
    finally:
        for process in started:
            process.stop()


Serve = Callable[..., Server]


@pytest.fixture
def serve(project: Path, run_qkhyper: type[Qkhyper]) -> Serve:
    def start(backend: str, *, qkhyper: str = "", top: str = "", name: str = "hypercorn") -> Server:
        return start_probe(run_qkhyper, project, backend, qkhyper=qkhyper, top=top, name=name)

    return start


def read_head(sock: socket.socket) -> bytes:
    """One response head (up to the blank line), with the deadline."""
    sock.settimeout(DEADLINE)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response head: {data!r}"
        data += chunk
    return data.partition(b"\r\n\r\n")[0]


def is_open(sock: socket.socket) -> bool:
    """The server has sent nothing and not closed: a read would block."""
    try:
        ready, _, _ = select.select([sock], [], [], 0)
        return not ready
    except OSError:
        return False


def answered(sock: socket.socket, pace: float = 0.1) -> bool:
    """Wait up to `pace` seconds for the server to answer or close."""
    ready, _, _ = select.select([sock], [], [], pace)
    return bool(ready)


def test_head_size_limit_is_64_kib_of_request_line_and_headers(probe: Server) -> None:
    assert statuses(exchange(probe.port, head_of_size(65536, b"/scope"))) == [200]
    assert statuses(exchange(probe.port, head_of_size(65537, b"/scope"))) == [431]


@pytest.mark.parametrize(
    "request_bytes",
    [b"GET /scope HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"GET /scope HTTP/1.1\r\nConnection: close\r\n\r\n"],
    ids=["duplicate-host", "missing-host"],
)
def test_host_rules(probe: Server, request_bytes: bytes) -> None:
    answer = exchange(probe.port, request_bytes)
    assert statuses(answer) == [400]
    if probe.backend == "uvicorn-h11":  # the run really took uvicorn's h11 protocol: h11's own refusal
        assert answer.endswith(b"Invalid HTTP request received.")


def test_header_count_limit_is_100_lines(probe: Server) -> None:
    assert statuses(exchange(probe.port, with_headers(100, b"/scope"))) == [200]
    answer = exchange(probe.port, with_headers(101, b"/scope", close=False))  # the server closes, asked or not
    assert statuses(answer) == [431]
    assert b'"detail": "more than 100 header lines"' in answer


def test_unending_heads_are_refused_without_holding_them(probe: Server) -> None:
    assert statuses(exchange(probe.port, head_of_size(200, b"/scope"))) == [200]  # warmed up
    before = psutil.Process(probe.pid).memory_info().rss
    sockets = [connect(probe.port) for _ in range(4)]
    line = b"X-Endless: " + b"a" * (1 << 20)  # no CRLF: a header that never ends
    for sock in sockets:
        sock.sendall(b"GET /scope HTTP/1.1\r\nHost: a\r\n")
        with contextlib.suppress(OSError):  # refused and closed while we send: the point
            for _ in range(8):
                sock.sendall(line)
    grown = psutil.Process(probe.pid).memory_info().rss - before
    assert grown < MAX_GROWTH, f"the worker grew by {grown >> 20} MiB for 4 unending 8 MiB heads"
    for sock in sockets:
        answer = read_to_close(sock)
        assert answer == b"" or statuses(answer) == [431], answer[:200]
        sock.close()


def test_content_length_with_transfer_encoding_is_400_and_the_connection_closes(probe: Server) -> None:
    """Nothing after the chunked end runs: one answer, then the server closes (RFC 9112 §6.1)."""
    assert statuses(exchange(probe.port, CL_TE.replace(b"/echo", b"/scope"))) == [400]


def test_h2c_upgrade_is_answered_as_http11(probe: Server) -> None:
    with connect(probe.port) as sock:
        sock.sendall(H2C.replace(b"/echo", b"/scope"))
        assert read_head(sock).startswith(b"HTTP/1.1 200 ")


def test_h2c_upgrade_when_enabled(serve: Serve) -> None:
    server = serve("hypercorn", qkhyper="h2c = true")
    with connect(server.port) as sock:
        sock.sendall(H2C.replace(b"/echo", b"/scope"))
        assert read_head(sock).startswith(b"HTTP/1.1 101 ")


@pytest.mark.parametrize("backend", [*BACKENDS, "hypercorn-trio"])
def test_header_timeout_closes_a_slow_head(serve: Serve, backend: str) -> None:
    """`header_timeout` decides, not `keep_alive_timeout` (120 s on both servers): 1 s closes, 60 s does not."""
    top = "keep_alive_timeout = 120"
    short = serve(backend, qkhyper="header_timeout = 1", top=top, name="short")
    long = serve(backend, qkhyper="header_timeout = 60", top=top, name="long")
    slow = [connect(short.port), connect(long.port)]
    silent = connect(short.port)
    for sock in slow:
        sock.sendall(b"GET /scope HTTP/1.1\r\nHost: a\r\nX-Slow: ")
    end = time.monotonic() + DEADLINE
    while not answered(slow[0]):  # a slowloris: one more header byte a tenth of a second
        assert time.monotonic() < end, f"a slow head was still open after {DEADLINE} s with header_timeout = 1"
        for sock in slow:
            with contextlib.suppress(OSError):
                sock.sendall(b"x")
    answer = read_to_close(slow[0])
    assert answer == b"" or statuses(answer) == [408], answer[:200]
    assert is_open(slow[1]), "the server with header_timeout = 60 closed the same slow head"
    slow[1].sendall(b"\r\nConnection: close\r\n\r\n")
    assert statuses(read_to_close(slow[1])) == [200]
    assert read_to_close(silent) == b""  # nothing sent: closed without an answer
    for sock in [*slow, silent]:
        sock.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_keep_alive_clock_stops_at_a_requests_first_byte(serve: Serve, backend: str) -> None:
    """`keep_alive_timeout` closes a connection that sent nothing, from accept, on both servers."""
    server = serve(backend, qkhyper="header_timeout = 60", top="keep_alive_timeout = 1")
    started = connect(server.port)
    started.sendall(b"GET /scope HTTP/1.1\r\n")  # accepted first: it would be closed first
    idle = connect(server.port)
    assert read_to_close(idle) == b""
    assert is_open(started), "keep_alive_timeout closed a connection whose request had begun"
    started.sendall(b"Host: a\r\nConnection: close\r\n\r\n")
    assert statuses(read_to_close(started)) == [200]
    idle.close()
    started.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_keep_alive_clock_runs_again_after_each_response(serve: Serve, backend: str) -> None:
    """Between requests too, `keep_alive_timeout` closes a connection that sends nothing more."""
    server = serve(backend, qkhyper="header_timeout = 60", top="keep_alive_timeout = 1")
    sock = connect(server.port)
    sock.sendall(b"GET /scope HTTP/1.1\r\nHost: a\r\n\r\n")
    read_head(sock)
    sock.sendall(b"GET /scope HTTP/1.1\r\nHost: a\r\n\r\n")  # a second one on the same connection
    rest = read_to_close(sock)
    assert statuses(rest) == [200], rest[:200]
    sock.close()


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_static_closes_after_content_length_with_transfer_encoding(
    run_qkhyper: type[Qkhyper], tmp_path: Path, backend: str
) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("<p>hi</p>")
    port = free_port()
    server = run_qkhyper(["static", "--root", "www", "--port", str(port), "--backend", backend], tmp_path)
    server.wait_ready()
    assert statuses(exchange(port, CL_TE.replace(b"/echo", b"/index.html"))) == [400]
    assert statuses(exchange(port, with_headers(101, b"/index.html"))) == [431]
    assert "Traceback" not in server.output
