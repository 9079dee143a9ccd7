"""A proxied WebSocket's access line: one when the session ends, 101 or the refusal's status, bytes both ways."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from qkhyper.asgi.types import Message, Scope
from qkhyper.proxy.mock import HANG, MockStream
from tests.proxy.harness import Client, call, make_core, settings, ws_accept, ws_scope
from tests.proxy.test_forward import untimed
from tests.proxy.test_websocket import CONNECT, Leaving, SlowClient, frame

pytestmark = pytest.mark.anyio

WITH_ID = [(b"host", b"gw.test"), (b"x-request-id", b"ws-1")]


def scope() -> Scope:
    websocket = ws_scope(headers=WITH_ID)
    del websocket["method"]  # as the servers give it: a WebSocket scope has no method
    return websocket


async def one_line(caplog: pytest.LogCaptureFixture, streams: list[Any], client: Client, fmt: str = "json") -> Any:
    core, backend = make_core(streams, settings(access_log=True, access_log_format=fmt, send_timeout=20.0))
    with caplog.at_level(logging.INFO, "qkhyper.access"):
        await call(core, scope(), client)
    assert all(stream.closed for stream in backend.opened)
    [record] = [r for r in caplog.records if r.name == "qkhyper.access"]
    return record


async def test_a_session_counts_message_bytes_both_ways(caplog: pytest.LogCaptureFixture) -> None:
    upstream = frame(0x1, "héllo".encode()) + frame(0x2, b"abcd")  # 6 + 4 bytes to the client
    stream = MockStream([lambda w: ws_accept(w, upstream), HANG])
    received: list[Message] = [
        {"type": "websocket.receive", "text": "hé"},
        {"type": "websocket.receive", "bytes": b"x"},
    ]
    client = Leaving(wanted=2, messages=received)
    record = await one_line(caplog, [stream], client)
    keys = ("method", "path", "status", "bytes", "bytes_in", "route", "upstream", "request_id")
    assert {key: getattr(record, key) for key in keys} == {
        "method": "GET",
        "path": "/up/ws",
        "status": 101,
        "bytes": 10,
        "bytes_in": 4,  # "hé" is 3 bytes of UTF-8, as on the wire
        "route": "/up",
        "upstream": "up.test:9000",
        "request_id": "ws-1",
    }
    assert record.getMessage() == "GET /up/ws 101"


async def test_the_combined_line(caplog: pytest.LogCaptureFixture) -> None:
    stream = MockStream([lambda w: ws_accept(w, frame(0x2, b"abcd")), HANG])
    record = await one_line(caplog, [stream], Leaving(wanted=1), "combined")
    line = untimed(record.getMessage())
    assert line.startswith('192.0.2.7 - - [T] "GET /up/ws HTTP/1.1" 101 4 "-" "-" /up up.test:9000 ')
    assert line.endswith("ms ws-1")


async def test_a_refusal_is_logged_with_its_status_and_body(caplog: pytest.LogCaptureFixture) -> None:
    stream = MockStream([b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\n", b"denied"])
    client = Client([CONNECT])
    record = await one_line(caplog, [stream], client)
    assert (record.status, record.bytes, record.bytes_in, client.body) == (403, 6, 0, b"denied")


async def test_a_dead_upstream_is_logged_with_the_proxys_answer(caplog: pytest.LogCaptureFixture) -> None:
    client = Client([CONNECT])
    record = await one_line(caplog, [ConnectionRefusedError(111, "refused")], client)
    assert (record.status, record.upstream, record.bytes) == (502, None, len(client.body))
    assert client.json["request_id"] == record.request_id == "ws-1"


async def test_a_message_the_client_never_took_is_not_counted(caplog: pytest.LogCaptureFixture) -> None:
    stream = MockStream([lambda w: ws_accept(w, frame(0x1, b"one")), HANG])
    record = await one_line(caplog, [stream], SlowClient([CONNECT]))
    assert (record.status, record.bytes) == (101, 0)


async def test_no_line_with_the_access_log_off(caplog: pytest.LogCaptureFixture) -> None:
    stream = MockStream([lambda w: ws_accept(w, frame(0x2, b"abcd")), HANG])
    core, _ = make_core([stream])
    client = Leaving(wanted=1)
    with caplog.at_level(logging.INFO, "qkhyper.access"):
        await call(core, scope(), client)
    assert client.sent[1] == {"type": "websocket.send", "bytes": b"abcd"} and caplog.records == []
