"""The metrics listener's HTTP handling, fed bytes in-process: routing, limits, deadlines.

`handle` gets one end of a `memory_stream_pair`; the test is the client on the
other end. Time is trio's MockClock, so the deadline test costs nothing.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from qkhyper.errors import ConfigError
from qkhyper.metrics.endpoint import Answer, MetricsEndpoint, bind_metrics, handle, json_answer

pytestmark = pytest.mark.anyio

PATHS: dict[bytes, Callable[[], Answer]] = {
    b"/metrics": lambda: Answer(200, "text/plain; version=0.0.4; charset=utf-8", b"up 1\n"),
    b"/healthz": lambda: json_answer(503, {"status": "unhealthy"}),
}


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


async def exchange(request: bytes, *, timeout: float = 10.0, max_head: int = 8192) -> tuple[bytes, float]:
    """Send `request`, read until the handler closes; the answer and the (virtual) time it took."""
    client, server = trio.testing.memory_stream_pair()
    start = trio.current_time()
    received = b""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: handle(server, PATHS, timeout=timeout, max_head=max_head))
        if request:
            await client.send_all(request)
        while chunk := await client.receive_some(65536):
            received += chunk
    return received, trio.current_time() - start


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split(" ")[1]), headers, body


async def test_get_metrics() -> None:
    raw, _ = await exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = parse(raw)
    assert status == 200 and body == b"up 1\n"
    assert headers["content-type"].startswith("text/plain") and headers["connection"] == "close"
    assert headers["content-length"] == "5"


async def test_head_has_the_length_but_no_body() -> None:
    raw, _ = await exchange(b"HEAD /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = parse(raw)
    assert (status, headers["content-length"], body) == (200, "5", b"")


async def test_a_503_is_passed_on_with_its_json() -> None:
    status, _, body = parse((await exchange(b"GET /healthz HTTP/1.0\r\n\r\n"))[0])
    assert status == 503 and json.loads(body) == {"status": "unhealthy"}


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"OPTIONS"])
async def test_other_methods_are_405(method: bytes) -> None:
    raw, _ = await exchange(method + b" /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    status, headers, body = parse(raw)
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert json.loads(body) == {"error": "method not allowed"}


async def test_other_paths_are_404_json() -> None:
    status, _, body = parse((await exchange(b"GET /metrics/x HTTP/1.1\r\nHost: x\r\n\r\n"))[0])
    assert status == 404 and json.loads(body)["error"] == "not found"


async def test_a_huge_head_is_431_and_closed() -> None:
    huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    raw, _ = await exchange(huge, max_head=8192)
    assert parse(raw)[0] == 431  # and the read loop ended: the handler closed the stream


async def test_garbage_is_400() -> None:
    raw, _ = await exchange(b"\x16\x03\x01 not http at all\r\n\r\n")
    assert parse(raw)[0] == 400


async def test_a_client_that_leaves_gets_nothing() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: handle(server, PATHS))
        await client.send_all(b"GET /met")
        await client.aclose()


async def test_a_slow_client_is_closed_at_the_deadline() -> None:
    client, server = trio.testing.memory_stream_pair()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: handle(server, PATHS, timeout=10.0))
        await client.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        assert await client.receive_some(100) == b""  # EOF: closed unanswered
    assert trio.current_time() - start == pytest.approx(10.0)


def test_a_taken_metrics_port_is_one_config_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"^metrics: port {port} on 127.0.0.1 is already in use"):
            bind_metrics(("127.0.0.1", port))
    sock = bind_metrics(("127.0.0.1", 0))
    try:
        assert not sock.get_inheritable()  # workers never hold it
    finally:
        sock.close()


async def test_connections_over_the_cap_are_closed_unanswered() -> None:
    sock = bind_metrics(("127.0.0.1", 0))
    try:
        endpoint = MetricsEndpoint(sock, max_connections=2)
        handler = endpoint.connection_handler(timeout=10.0)
        pairs = [trio.testing.memory_stream_pair() for _ in range(3)]
        async with trio.open_nursery() as nursery:
            for _, server in pairs[:2]:
                nursery.start_soon(handler, server)
            await trio.testing.wait_all_tasks_blocked()  # both hold a place, waiting for a request
            nursery.start_soon(handler, pairs[2][1])
            third = pairs[2][0]
            assert await third.receive_some(100) == b""  # closed at once: two are being served
            start = trio.current_time()
            for client, _ in pairs[:2]:
                await client.send_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _, body = parse(await client.receive_some(65536))
                assert status == 503 and json.loads(body) == {"status": "starting"}  # no supervisor yet
            assert trio.current_time() == start  # answered, not left to the deadline
    finally:
        sock.close()
