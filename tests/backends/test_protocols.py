"""qkhyper's protocol classes in-process, fed raw bytes: the edge rules at the parser, fast.

Every case runs on the three parsers a worker may use: Hypercorn's h11
protocol, uvicorn's httptools protocol and uvicorn's h11 protocol (taken where
httptools is missing). The same rows run through real servers in test_limits.py.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol as UvicornH11

from qkhyper.backends.uvicorn_h11 import EdgeH11Protocol
from qkhyper.backends.uvicorn_httptools import EdgeHttpToolsProtocol
from qkhyper.config.model import EdgeLimits
from tests.backends.harness import (
    CL_TE,
    H2C,
    body_of,
    head_of_size,
    hypercorn_exchange,
    statuses,
    uvicorn_exchange,
    uvicorn_protocol,
)

PROTOCOLS = ["hypercorn", "httptools", "h11"]
SMALL = EdgeLimits(max_header_size=1024, header_timeout=0.05)


def exchange(protocol: str, limits: EdgeLimits, *chunks: bytes) -> bytes:
    if protocol == "hypercorn":
        return asyncio.run(hypercorn_exchange(limits, *chunks))
    base = EdgeHttpToolsProtocol if protocol == "httptools" else EdgeH11Protocol
    return asyncio.run(uvicorn_exchange(base, limits, *chunks))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
        (b"GET /echo HTTP/1.0\r\n\r\n", 200),  # HTTP/1.0 needs no Host
        (b"GET /echo HTTP/1.1\r\nhost: a\r\nConnection: close\r\n\r\n", 200),
    ],
    ids=["duplicate-host", "missing-host", "http10-no-host", "one-host"],
)
def test_host_rules(protocol: str, request_bytes: bytes, status: int) -> None:
    assert statuses(exchange(protocol, EdgeLimits(), request_bytes)) == [status]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_absolute_form_stays_visible(protocol: str) -> None:
    output = exchange(
        protocol, EdgeLimits(), b"GET http://evil.example/a%20b?x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    seen = json.loads(body_of(output))
    assert (seen["raw_path"], seen["path"]) == ("http://evil.example/a%20b", "http://evil.example/a b")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("pieces", [1, 7, 100], ids=["one-read", "7-byte-reads", "100-byte-reads"])
def test_head_size_is_exact(protocol: str, pieces: int) -> None:
    def split(data: bytes) -> list[bytes]:
        size = len(data) if pieces == 1 else pieces
        return [data[i : i + size] for i in range(0, len(data), size)]

    assert statuses(exchange(protocol, SMALL, *split(head_of_size(1024)))) == [200]
    assert statuses(exchange(protocol, SMALL, *split(head_of_size(1025)))) == [431]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unending_head_is_refused_at_the_limit(protocol: str) -> None:
    output = exchange(protocol, SMALL, b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Long: ", *[b"x" * 700] * 50)
    assert statuses(output) == [431]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_body_arriving_with_the_head_is_not_counted(protocol: str) -> None:
    body = b"b" * 5000
    request = b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 5000\r\n\r\n" + body
    assert statuses(exchange(protocol, SMALL, request)) == [200]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pipelined_requests_each_get_an_answer(protocol: str) -> None:
    one = b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n"
    last = b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    assert statuses(exchange(protocol, SMALL, one + one + last)) == [200, 200, 200]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_content_length_with_transfer_encoding_is_refused_and_nothing_after_it_runs(protocol: str) -> None:
    assert statuses(exchange(protocol, EdgeLimits(), CL_TE)) == [400]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_h2c_upgrade_is_served_as_http11(protocol: str) -> None:
    output = exchange(protocol, EdgeLimits(), H2C, b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert statuses(output)[0] == 200


def test_h2c_upgrade_when_enabled_on_hypercorn() -> None:
    assert asyncio.run(hypercorn_exchange(EdgeLimits(h2c=True), H2C)).startswith(b"HTTP/1.1 101 ")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_header_timeout_answers_a_partial_head_with_408(protocol: str) -> None:
    output = exchange(protocol, SMALL, b"GET /echo HTTP/1.1\r\nHo")
    assert statuses(output) == [408]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_header_timeout_closes_a_silent_connection_without_an_answer(protocol: str) -> None:
    assert exchange(protocol, SMALL) == b""


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_header_timeout_restarts_after_each_response(protocol: str) -> None:
    output = exchange(protocol, SMALL, b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")  # keep-alive, then silence
    assert statuses(output) == [200]


def test_uvicorn_h11_base_is_uvicorns() -> None:
    assert issubclass(EdgeH11Protocol, UvicornH11)


WEBSOCKET_UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.parametrize("protocol", ["httptools", "h11"])
def test_a_websocket_upgrade_leaves_no_header_clock_behind(protocol: str) -> None:
    """After the switch the connection is the WebSocket protocol's: the HTTP protocol's clock must not close it.

    It did on uvicorn's httptools protocol: the upgrade request's end started the
    wait for a next head, and `header_timeout` (10 s) later every WebSocket was
    cut (found by the bench's 5,000-WebSocket row).
    """

    async def upgrade() -> tuple[bool, bool]:
        base = EdgeHttpToolsProtocol if protocol == "httptools" else EdgeH11Protocol
        http, transport = uvicorn_protocol(base, SMALL)
        http.data_received(WEBSOCKET_UPGRADE)
        switched = transport.get_protocol() is not http
        clock = http.head_clock  # type: ignore[attr-defined]
        return switched, clock.waiting or clock.handle is not None

    switched, clock_running = asyncio.run(upgrade())
    assert switched and not clock_running
