"""The access line's size: the response body bytes the client was sent, whatever the path out.

Each test compares the logged size with what the scripted client actually
received (`Client.body`), so the expectation is never a second count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import trio

from qkhyper.asgi.types import Message
from qkhyper.proxy.forward import SMALL_BODY, Route
from qkhyper.proxy.mock import HANG, MockStream
from tests.proxy.harness import (
    Client,
    assert_no_leak,
    body_messages,
    call,
    chunked,
    http_scope,
    make_core,
    response,
    route,
    running,
    settings,
)

pytestmark = pytest.mark.anyio

ON = settings(access_log=True, access_log_format="json")


def access_records(caplog: pytest.LogCaptureFixture) -> list[Any]:
    return [r for r in caplog.records if r.name == "qkhyper.access"]


async def logged_bytes(caplog: pytest.LogCaptureFixture, streams: list[Any], client: Client, **kw: Any) -> int:
    """One request through a core with the access log on; the `bytes` of its one access line."""
    proxy = kw.pop("proxy", ON)
    core, backend = make_core(streams, proxy, **kw)
    with caplog.at_level(logging.INFO, "qkhyper.access"):
        await call(core, http_scope(), client)
    assert_no_leak(core, backend)
    [record] = access_records(caplog)
    size: int = record.bytes
    return size


async def test_a_body_with_a_length(caplog: pytest.LogCaptureFixture) -> None:
    client = Client()
    assert await logged_bytes(caplog, [MockStream([response(200, b"x" * 1000)])], client) == 1000
    assert len(client.body) == 1000


async def test_a_chunked_stream_counts_every_chunk(caplog: pytest.LogCaptureFixture) -> None:
    chunks = [b"a" * 700, b"b" * 5, b"c" * (SMALL_BODY + 1)]  # streamed with the client watched
    client = Client()
    assert await logged_bytes(caplog, [MockStream([chunked(*chunks)])], client) == sum(map(len, chunks))
    assert client.body == b"".join(chunks)


async def test_no_body_is_zero_and_a_dash_in_combined(caplog: pytest.LogCaptureFixture) -> None:
    core, _ = make_core([MockStream([response(204, b"", length=False)])], settings(access_log=True))
    with caplog.at_level(logging.INFO, "qkhyper.access"):
        await call(core, http_scope(), Client())
    [record] = access_records(caplog)
    assert record.bytes == 0 and '" 204 - "-"' in record.getMessage()


def grow(route: Route, path: bytes) -> Callable[[bytes], bytes] | None:
    return (lambda body: body.replace(b"/openapi.json", b"/up/openapi.json")) if path == b"/docs" else None


async def test_a_rewritten_docs_body_counts_what_was_sent(caplog: pytest.LogCaptureFixture) -> None:
    page = b'<script>url: "/openapi.json"</script>'
    client = Client()
    core, backend = make_core([MockStream([response(200, page)])], ON, rewrite_body=grow)
    with caplog.at_level(logging.INFO, "qkhyper.access"):
        await call(core, http_scope("/up/docs"), client)
    assert_no_leak(core, backend)
    [record] = access_records(caplog)
    assert record.bytes == len(page) + 3 == len(client.body)  # the edited body, not the upstream's


@pytest.mark.parametrize(
    ("streams", "status"),
    [
        # Made per run: a stream is used up by the request (mutmut runs a test more than once per process).
        (lambda: [ConnectionRefusedError(111, "refused")], 502),
        (lambda: [MockStream([HANG])], 504),  # no head within read_timeout
        (lambda: [MockStream([b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"])], 502),
    ],
)
async def test_the_proxys_own_error_answer(
    caplog: pytest.LogCaptureFixture, streams: Callable[[], list[Any]], status: int
) -> None:
    client = Client()
    size = await logged_bytes(caplog, streams(), client)
    assert client.status == status and size == len(client.body) and client.json["error"]


async def test_a_refused_body_answer(caplog: pytest.LogCaptureFixture) -> None:
    client = Client(body_messages(b"too large"))
    core, _ = make_core([], settings(access_log=True, access_log_format="json", max_body_size=4))
    with caplog.at_level(logging.INFO, "qkhyper.access"):
        await call(core, http_scope(method="POST", headers=[(b"host", b"gw.test"), (b"content-length", b"9")]), client)
    [record] = access_records(caplog)
    assert client.status == 413 and record.bytes == len(client.body) > 0


async def test_a_client_that_left_mid_body_counts_what_it_was_sent(caplog: pytest.LogCaptureFixture) -> None:
    stream = MockStream([chunked(b"a" * 10, b"b" * 20)[:-5], HANG])  # endless: the rest never comes
    core, backend = make_core([stream], ON)
    client = Client()

    async def leave_after_the_body_starts() -> None:
        while len(client.body) < 30:
            await trio.sleep(0.01)
        client.leave.set()

    with caplog.at_level(logging.INFO, "qkhyper.access"):
        async with running(core) as nursery:
            nursery.start_soon(leave_after_the_body_starts)
            await core.handle(http_scope(), client.receive, client.send, route(core), 3)
    [record] = access_records(caplog)
    assert record.status == 200 and record.bytes == 30 == len(client.body)
    assert_no_leak(core, backend)


class Stalling(Client):
    """Takes the head and the first chunk, then never takes another (send_timeout ends it)."""

    async def send(self, message: Message) -> None:
        if message.get("body") and any(m.get("body") for m in self.sent):
            await trio.sleep_forever()
        await super().send(message)


async def test_a_chunk_the_client_never_took_is_not_counted(caplog: pytest.LogCaptureFixture) -> None:
    stream = MockStream([chunked(b"a" * 10, b"b" * 20, b"c" * 40)])
    client = Stalling()
    size = await logged_bytes(caplog, [stream], client, proxy=settings(access_log=True, send_timeout=5))
    assert size == 10 == len(client.body)
