"""The gateway against hostile and unlucky traffic, end to end, on both backends.

Each test here reproduces a failure the gateway once had: a raw-socket
upstream produces exactly the bytes that caused it, a real `qkhyper gateway`
sits in between, and the client is raw bytes, httpx or websockets.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.conftest import Qkhyper, free_port
from tests.gateway.conftest import StackFactory, raw_request

BACKENDS = ["hypercorn", "uvicorn"]
MB = 1024 * 1024


@contextmanager
def raw_server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server on 127.0.0.1 that runs `handle` on each connection, in a thread of its own."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(30)
            conns.append(conn)
            threading.Thread(target=_guarded, args=(handle, conn), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in conns:
            conn.close()
        server.close()


def _guarded(handle: Callable[[socket.socket], None], conn: socket.socket) -> None:
    try:
        handle(conn)
    except OSError:
        pass  # the test is over, or the gateway hung up: nothing to do


def read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def wait_closed(conn: socket.socket) -> None:
    while conn.recv(65536):
        pass


def accept_key(head: bytes) -> bytes:
    match = re.search(rb"(?i)sec-websocket-key: *(\S+)", head)
    assert match, head
    return base64.b64encode(hashlib.sha1(match.group(1) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())


SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "


# --- 1. stale pooled connections, rolling restarts ------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_upstream_closing_each_connection_when_the_second_request_comes(stack: StackFactory, backend: str) -> None:
    def one_shot(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # keep-alive...
        read_head(conn)  # ...until the next request arrives: then it closes without a word
        conn.close()

    with raw_server(one_shot) as port:
        s = stack(("--upstream", f"once:127.0.0.1:{port}", "--backend", backend), serve=False)
        with httpx.Client(timeout=30) as client:
            statuses = [client.get(f"{s.url}/once/x").status_code for _ in range(20)]
    assert statuses == [200] * 20


@pytest.mark.parametrize("backend", BACKENDS)
def test_rolling_restarts_through_the_gateway_fail_no_request(stack: StackFactory, backend: str) -> None:
    s = stack(("--backend", backend), qkhyper=f'backend = "{backend}"')
    assert s.serve is not None
    results: list[int | str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    results.append(client.get(f"{s.url}/up/echo").status_code)
                except httpx.HTTPError as exc:
                    results.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(5):
            start = len(s.serve.lines)
            s.serve.signal(signal.SIGHUP)
            s.serve.wait_for("rolling restart done", start=start)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    failures = [r for r in results if r != 200]
    assert failures == [] and len(results) > 100, f"{len(failures)} of {len(results)} failed: {failures[:5]}"


# --- 2. Host rules, and no descriptor leak ------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_host_rules_are_400_and_leak_nothing(stack: StackFactory, backend: str) -> None:
    s = stack(("--backend", backend))
    worker = psutil.Process(s.gateway.pids("gateway")[0])
    assert raw_request(s.port, b"GET /up/echo HTTP/1.1\r\nHost: a\r\n\r\n")[0] == 200  # the pool holds one
    before = worker.num_fds()
    for _ in range(40):
        status, body = raw_request(s.port, b"GET /up/echo HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n")
        assert status == 400, body
    assert raw_request(s.port, b"GET /up/echo HTTP/1.1\r\nConnection: close\r\n\r\n")[0] == 400
    absolute = b"GET http://evil.example/up/echo HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    assert raw_request(s.port, absolute)[0] == 400
    assert worker.num_fds() <= before + 2
    assert "Traceback" not in s.gateway.output


# --- 3, 9. WebSocket handshakes ------------------------------------------------------------------


def first_frame_with_the_101(conn: socket.socket) -> None:
    head = read_head(conn)
    conn.sendall(SWITCH + accept_key(head) + b"\r\n\r\n" + b"\x81\x05hello")  # one write, one packet
    wait_closed(conn)


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_websocket_message_sent_with_the_101_arrives(stack: StackFactory, backend: str) -> None:
    with raw_server(first_frame_with_the_101) as port:
        s = stack(("--upstream", f"ws:127.0.0.1:{port}", "--backend", backend), serve=False)
        with connect(f"ws://127.0.0.1:{s.port}/ws/x", open_timeout=10) as ws:
            assert ws.recv(timeout=10) == "hello"


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_websocket_message_through_static_and_the_gateway(
    stack: StackFactory, run_qkhyper: type[Qkhyper], project: Path, backend: str
) -> None:
    with raw_server(first_frame_with_the_101) as port:
        s = stack(("--upstream", f"ws:127.0.0.1:{port}", "--backend", backend), serve=False)
        root = project / "site"
        root.mkdir()
        (root / "index.html").write_text("<p>hi</p>")
        static_port = free_port()
        args = ["static", "--root", str(root), "--port", str(static_port), "--api-target", s.url, "--backend", backend]
        static = run_qkhyper(args, project)
        static.wait_ready()
        with connect(f"ws://127.0.0.1:{static_port}/api/ws/x", open_timeout=10) as ws:
            assert ws.recv(timeout=10) == "hello"


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_accept_key_from_the_upstream_is_502(stack: StackFactory, backend: str) -> None:
    def bad_accept(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(SWITCH + b"d3Jvbmc=\r\n\r\n")
        wait_closed(conn)

    with raw_server(bad_accept) as port:
        s = stack(("--upstream", f"ws:127.0.0.1:{port}", "--backend", backend), serve=False)
        with pytest.raises(InvalidStatus) as info:
            with connect(f"ws://127.0.0.1:{s.port}/ws/x", open_timeout=10):
                pass
    assert info.value.response.status_code == 502
    assert json.loads(info.value.response.body)["reason"] == "upstream sent a malformed response"
    assert "Traceback" not in s.gateway.output


# --- 4. one forwarding-header policy -----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_websocket_cannot_spoof_forwarding_headers(stack: StackFactory, backend: str) -> None:
    s = stack(("--backend", backend))
    spoof = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    with connect(f"ws://127.0.0.1:{s.port}/up/ws-scope", additional_headers=spoof, open_timeout=10) as ws:
        seen = json.loads(ws.recv(timeout=10))
    assert seen == {"scheme": "ws", "host": f"127.0.0.1:{s.port}"}


# --- 7. memory bounds ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_chunked_openapi_passes_through_in_flat_memory(stack: StackFactory, backend: str) -> None:
    s = stack(("--backend", backend))
    worker = psutil.Process(s.gateway.pids("gateway")[0])
    before = worker.memory_info().rss
    size = 200 * MB
    received = 0
    with httpx.stream("GET", f"{s.url}/up/openapi.json?size={size}", timeout=60) as response:
        for chunk in response.iter_bytes():
            received += len(chunk)
    growth = worker.memory_info().rss - before
    assert received > size
    assert growth < 50 * MB, f"gateway RSS grew by {growth / MB:.0f} MB"


@pytest.mark.parametrize("backend", BACKENDS)
def test_websocket_messages_over_the_limit_close_with_1009(stack: StackFactory, backend: str) -> None:
    s = stack(("--backend", backend), gateway_table=f"ws_max_message_size = {MB}")
    with connect(f"ws://127.0.0.1:{s.port}/up/ws-big?size={2 * MB}", open_timeout=10, max_size=None) as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=20)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    with connect(f"ws://127.0.0.1:{s.port}/up/ws", open_timeout=10) as ws:
        ws.send(b"x" * (2 * MB))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=20)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_gateway_offers_websocket_clients_no_compression(stack: StackFactory, backend: str) -> None:
    """Both servers inflate a permessage-deflate frame whole before any size check (a deflate bomb)."""
    s = stack(("--backend", backend))
    with connect(f"ws://127.0.0.1:{s.port}/up/ws", open_timeout=10, compression="deflate") as ws:
        assert ws.response is not None
        assert "sec-websocket-extensions" not in ws.response.headers
        ws.send("plain")
        assert ws.recv(timeout=10) == "plain"


# --- 8. timeouts --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_upstream_stalling_mid_body_is_cut_off(stack: StackFactory, backend: str) -> None:
    def stall(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        wait_closed(conn)

    with raw_server(stall) as port:
        s = stack(
            ("--upstream", f"stall:127.0.0.1:{port}", "--backend", backend),
            gateway_table="upstream_idle_timeout = 1",
            serve=False,
        )
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"{s.url}/stall/x", timeout=20)
    s.gateway.wait_for("upstream sent nothing for 1 s in the middle of the body")


@pytest.mark.parametrize("backend", BACKENDS)
def test_client_dribbling_its_body_gets_408(stack: StackFactory, backend: str) -> None:
    s = stack(("--backend", backend), gateway_table="client_body_timeout = 1")
    with socket.create_connection(("127.0.0.1", s.port), timeout=20) as sock:
        sock.sendall(b"POST /up/upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nx")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"reason": "client stopped sending the body"' in answer


# --- 9. prefixes are matched as the upstream reads them -----------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_percent_encoded_prefix_matches_and_keeps_the_rest(stack: StackFactory, backend: str) -> None:
    s = stack(("--backend", backend))
    status, body = raw_request(s.port, b"GET /%75p/raw/a%2Fb HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert status == 200
    seen = json.loads(body)
    assert (seen["raw_path"], seen["root_path"]) == ("/up/raw/a%2Fb", "/up")
