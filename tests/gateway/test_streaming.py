"""Streaming through the gateway: SSE, big bodies in flat memory, WebSockets, disconnects."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.conftest import clean_env
from tests.gateway.conftest import StackFactory

MB = 1024 * 1024


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_sse_events_arrive_one_by_one(stack: StackFactory, backend: str) -> None:
    s = stack(("--backend", backend))
    with httpx.stream("GET", f"{s.url}/up/events?count=3&pause=5") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        lines = response.iter_lines()
        # The upstream pauses 5 s after each event: seeing the first one now means no buffering.
        first = next(line for line in lines if line)
        assert first == "data: event 0"
        assert not response.is_closed


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_big_download_and_upload_in_flat_memory(stack: StackFactory, backend: str) -> None:
    s = stack(("--backend", backend))
    worker = psutil.Process(s.gateway.pids("gateway")[0])
    before = worker.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], worker.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    size = 200 * MB
    digest = hashlib.sha256()
    received = 0
    with httpx.stream("GET", f"{s.url}/up/download?size={size}", timeout=60) as response:
        for chunk in response.iter_bytes():
            received += len(chunk)
    assert received == size

    def body():
        chunk = b"y" * MB
        for _ in range(200):
            digest.update(chunk)
            yield chunk

    uploaded = httpx.post(f"{s.url}/up/upload", content=body(), timeout=60).json()
    stop.set()
    sampler.join()
    assert uploaded == {"size": 200 * MB, "sha256": digest.hexdigest()}
    assert peak[0] - before < 50 * MB, f"gateway RSS grew by {(peak[0] - before) / MB:.0f} MB"


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_websocket_proxy(stack: StackFactory, backend: str) -> None:
    s = stack(("--backend", backend))
    url = f"ws://127.0.0.1:{s.port}/up/ws"
    with connect(url, subprotocols=["v1", "v2"]) as ws:
        assert ws.subprotocol == "v2"
        ws.send("hello")
        assert ws.recv() == "hello"
        ws.send(b"\x00\x01binary")
        assert ws.recv() == b"\x00\x01binary"
        big = "z" * 300_000
        ws.send(big)
        assert ws.recv() == big
        ws.ping()
        ws.send("close-me")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4002, "bye")


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_a_websocket_outlives_the_header_timeout(stack: StackFactory, backend: str) -> None:
    """The header clock is for heads: once a connection is a WebSocket, no header_timeout may end it.

    On the uvicorn backend it did, 10 s after the handshake, for every
    WebSocket (found by the bench's 5,000-WebSocket row). Here the timeout is
    1 s and the session goes on past it; time passing is what is tested.
    """
    s = stack(("--backend", backend), qkhyper="header_timeout = 1")
    with connect(f"ws://127.0.0.1:{s.port}/up/ws") as ws:
        opened = time.monotonic()
        ws.send("before")
        assert ws.recv(timeout=10) == "before"
        while time.monotonic() - opened < 2.0:  # twice the header timeout, on both legs
            ws.send("during")
            assert ws.recv(timeout=10) == "during"
            time.sleep(0.25)
        ws.send("after")
        assert ws.recv(timeout=10) == "after"


def test_websocket_client_close_code_reaches_upstream(stack: StackFactory, project: Path) -> None:
    # uvicorn on both sides: Hypercorn hands every client close to the app as 1006.
    log = project / "events.log"
    s = stack(qkhyper='backend = "uvicorn"', env={"PROBE_LOG": str(log)})
    with connect(f"ws://127.0.0.1:{s.port}/up/ws") as ws:
        ws.send("x")
        ws.recv()
        ws.close(code=4001, reason="done")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "ws closed" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.05)
    assert "ws closed 4001" in log.read_text()


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_websocket_to_dead_upstream_is_502_json(stack: StackFactory, backend: str) -> None:
    s = stack(("--upstream", "dead:127.0.0.1:1", "--backend", backend))
    with pytest.raises(InvalidStatus) as info:
        with connect(f"ws://127.0.0.1:{s.port}/dead/ws", open_timeout=10):
            pass
    response = info.value.response
    assert response.status_code == 502
    assert json.loads(response.body) == {
        "error": "bad gateway",
        "route": "/dead",
        "reason": "upstream refused the connection",
        "request_id": response.headers["x-request-id"],
    }


def test_client_disconnect_stops_an_endless_stream(stack: StackFactory, project: Path) -> None:
    log = project / "events.log"
    s = stack(env={"PROBE_LOG": str(log)})
    with httpx.stream("GET", f"{s.url}/up/slow-stream") as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line).startswith("data: tick")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not (log.exists() and "stream closed" in log.read_text()):
        time.sleep(0.05)
    assert "stream closed" in log.read_text()


def test_client_disconnect_cancels_a_slow_request(stack: StackFactory, project: Path) -> None:
    log = project / "events.log"
    s = stack(env={"PROBE_LOG": str(log)})
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{s.url}/up/slow?seconds=60", timeout=2)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not (log.exists() and "slow cancelled" in log.read_text()):
        time.sleep(0.05)
    assert "slow cancelled" in log.read_text()


# The upstream trusts nobody's X-Forwarded-For here, so it reports the gateway's real port.
DISTRUST = 'forwarded_allow_ips = ["10.255.255.1"]'


def test_keep_alive_pool_reuses_connections(stack: StackFactory) -> None:
    s = stack(qkhyper=DISTRUST)
    with httpx.Client() as client:
        ports = {client.get(f"{s.url}/up/echo").json()["client_port"] for _ in range(20)}
    assert len(ports) == 1 and ports != {0}


def test_pooled_connection_the_upstream_closed_is_not_reused(stack: StackFactory) -> None:
    # The upstream closes idle connections after 1 s; the gateway would keep them 10 s.
    s = stack(
        ("--backend", "uvicorn"),
        top="keep_alive_timeout = 1",
        qkhyper=DISTRUST,
        gateway_table="pool_idle_timeout = 10.0",
    )
    first = httpx.get(f"{s.url}/up/echo").json()["client_port"]
    worker = psutil.Process(s.gateway.pids("gateway")[0])

    def pooled() -> bool:
        return any(c.laddr.port == first and c.status == "ESTABLISHED" for c in worker.net_connections())

    deadline = time.monotonic() + 15
    while pooled() and time.monotonic() < deadline:  # until the upstream's close has reached the gateway
        time.sleep(0.05)
    assert not pooled()
    again = httpx.get(f"{s.url}/up/echo")
    assert again.status_code == 200 and again.json()["client_port"] != first


def test_env_is_clean() -> None:
    assert "QKHYPER_CONFIG" not in clean_env()
