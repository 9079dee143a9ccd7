"""Forwarding HTTP requests, in-process: every retry rule, timeout and cleanup branch.

Each test scripts the upstream's bytes (`MockStream`), plays the client
(`Client`) and ends by checking that no connection leaked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import h11
import pytest
import trio

from qkhyper.proxy.connection import MAX_HEAD, READ_SIZE
from qkhyper.proxy.errors import (
    BadRequest,
    ClientGone,
    ConnectFailed,
    MalformedResponse,
    UpstreamClosed,
)
from qkhyper.proxy.forward import REDIRECT_BODY, REWRITE_LIMIT, RedirectMemo, Route, may_retry
from qkhyper.proxy.mock import HANG, MockStream
from tests.proxy.harness import (
    TARGET,
    Client,
    assert_no_leak,
    body_messages,
    call,
    chunked,
    http_scope,
    make_core,
    request_line,
    response,
    route,
    running,
    settings,
)

pytestmark = pytest.mark.anyio

WITH_ID = [(b"host", b"gw.test"), (b"x-request-id", b"req-1")]


async def test_request_and_response_cross() -> None:
    stream = MockStream([response(200, b"hello", [("X-Up", "1"), ("Connection", "x-up")])])
    core, backend = make_core([stream])
    client = Client()
    await call(core, http_scope("/up/items/1", query=b"a=1"), client)
    assert (client.status, client.body, client.complete) == (200, b"hello", True)
    assert b"x-up" not in client.headers  # named in Connection: hop-by-hop
    assert request_line(stream.written) == b"GET /items/1?a=1 HTTP/1.1"
    assert b"x-forwarded-prefix: /up\r\n" in stream.written
    assert backend.connects == [TARGET]
    assert_no_leak(core, backend)
    assert core.pool.idle_count(TARGET) == 1


async def test_pooled_connection_is_reused_lifo() -> None:
    first, second = MockStream([response(), response()]), MockStream([response(), response()])
    core, backend = make_core([first, second])
    async with running(core):
        clients = [Client(), Client()]
        # Two requests at once need two connections; both go back to the pool.
        async with trio.open_nursery() as nursery:
            for client in clients:
                nursery.start_soon(core.handle, http_scope(), client.receive, client.send, route(core), 3)
        assert core.pool.idle_count(TARGET) == 2
        last_released = core.pool._idle[TARGET][-1].stream
        await core.handle(http_scope(), Client().receive, Client().send, route(core), 3)
    assert last_released.sends == 2 and len(backend.opened) == 2
    assert_no_leak(core, backend)


async def test_idle_connections_expire_and_are_closed() -> None:
    old, new = MockStream([response()]), MockStream([response()])
    core, backend = make_core([old, new], settings(pool_idle_timeout=4.0))
    await call(core, http_scope(), Client())
    await trio.sleep(4.0)
    await call(core, http_scope(), Client())
    assert old.closed and new.sends == 1
    assert_no_leak(core, backend)


async def test_idle_connection_younger_than_the_timeout_is_kept() -> None:
    stream = MockStream([response(), response()])
    core, backend = make_core([stream], settings(pool_idle_timeout=4.0))
    await call(core, http_scope(), Client())
    await trio.sleep(3.9)
    await call(core, http_scope(), Client())
    assert len(backend.opened) == 1 and not stream.closed
    assert_no_leak(core, backend)


async def test_pool_keeps_at_most_max_idle() -> None:
    streams = [MockStream([response()]) for _ in range(3)]
    core, backend = make_core(streams, settings(pool_max_idle=2))
    async with running(core):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                client = Client()
                nursery.start_soon(core.handle, http_scope(), client.receive, client.send, route(core), 3)
    assert core.pool.idle_count(TARGET) == 2
    assert sum(s.closed for s in streams) == 1
    assert_no_leak(core, backend)


async def test_an_idle_connection_the_upstream_closed_is_not_reused() -> None:
    stale = MockStream([response(), b""])  # the upstream closed after answering: visible as readable
    fresh = MockStream([response(200, b"fresh")])
    core, backend = make_core([stale, fresh])
    await call(core, http_scope(), Client())
    client = Client()
    await call(core, http_scope(), client)
    assert client.body == b"fresh" and stale.closed and stale.sends == 1  # never sent the second request
    assert_no_leak(core, backend)


# --- retries: SPEC §4 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [b"", ConnectionResetError("reset by peer")],
    ids=["eof", "reset"],
)
async def test_stale_pooled_connection_is_retried_for_an_idempotent_bodiless_request(
    failure: bytes | Exception,
) -> None:
    # The close is still on its way when the pool checks: only the read finds it.
    stale = MockStream([response(), failure], hide_eof=True)
    fresh = MockStream([response(200, b"second")])
    core, backend = make_core([stale, fresh])
    await call(core, http_scope(), Client())
    client = Client()
    await call(core, http_scope(), client)
    assert (client.status, client.body) == (200, b"second")
    assert request_line(fresh.written) == b"GET /x HTTP/1.1"
    assert len(backend.connects) == 2
    assert_no_leak(core, backend)


async def test_post_with_a_body_on_a_stale_connection_is_not_retried() -> None:
    stale = MockStream([response(), b""], hide_eof=True)
    core, backend = make_core([stale, MockStream([response()])])
    await call(core, http_scope(), Client())
    client = Client(body_messages(b"payload"))
    headers = [(b"host", b"gw.test"), (b"content-length", b"7")]
    await call(core, http_scope(method="POST", headers=headers), client)
    assert client.status == 502 and client.json["reason"] == "upstream closed the connection"
    assert len(backend.connects) == 1
    assert_no_leak(core, backend)


async def test_non_idempotent_bodiless_request_is_not_retried_once_written() -> None:
    stale = MockStream([response(), b""], hide_eof=True)
    core, backend = make_core([stale, MockStream([response()])])
    await call(core, http_scope(), Client())
    client = Client()
    await call(core, http_scope(method="POST"), client)
    assert client.status == 502 and len(backend.connects) == 1
    assert_no_leak(core, backend)


async def test_any_request_is_retried_when_not_one_byte_was_written() -> None:
    stale = MockStream([response()], fail_send_at=1)  # the second request's first write fails
    fresh = MockStream([response(201, b"made")])
    core, backend = make_core([stale, fresh])
    await call(core, http_scope(), Client())
    client = Client(body_messages(b"pay", b"load"))
    headers = [(b"host", b"gw.test"), (b"content-length", b"7")]
    await call(core, http_scope(method="POST", headers=headers), client)
    assert (client.status, client.body) == (201, b"made")
    assert fresh.written.endswith(b"\r\n\r\npayload")
    assert_no_leak(core, backend)


async def test_a_fresh_connection_closing_is_not_retried() -> None:
    core, backend = make_core([MockStream([b""]), MockStream([response()])])
    client = Client()
    await call(core, http_scope(), client)
    assert client.status == 502 and len(backend.connects) == 1
    assert_no_leak(core, backend)


async def test_a_close_after_part_of_the_response_is_not_retried() -> None:
    stale = MockStream([response(), b"HTTP/1.1 200 OK\r\nContent-Le", b""], hide_eof=True)
    core, backend = make_core([stale, MockStream([response()])])
    await call(core, http_scope(), Client())
    client = Client()
    await call(core, http_scope(), client)
    assert client.status == 502 and len(backend.connects) == 1
    assert_no_leak(core, backend)


async def test_retry_happens_once() -> None:
    stale = MockStream([response(), b""], hide_eof=True)
    core, backend = make_core([stale, MockStream([b""]), MockStream([response()])])
    await call(core, http_scope(), Client())
    client = Client()
    await call(core, http_scope(), client)
    assert client.status == 502 and len(backend.connects) == 2
    assert_no_leak(core, backend)


@pytest.mark.parametrize(
    ("exc", "reused", "nothing_sent", "replayable", "expected"),
    [
        (UpstreamClosed("x", before_response=True), True, False, True, True),
        (UpstreamClosed("x", before_response=True), True, True, False, True),
        (UpstreamClosed("x", before_response=True), True, False, False, False),
        (UpstreamClosed("x", before_response=True), False, True, True, False),
        (UpstreamClosed("x", before_response=False), True, True, True, False),
        (MalformedResponse("x"), True, True, True, False),
        (ConnectFailed("x"), True, True, True, False),
    ],
)
def test_may_retry_table(
    exc: UpstreamClosed, reused: bool, nothing_sent: bool, replayable: bool, expected: bool
) -> None:
    assert may_retry(exc, reused=reused, nothing_sent=nothing_sent, replayable=replayable) is expected


# --- connect and head timeouts --------------------------------------------------------------


async def test_connect_refused_is_502() -> None:
    core, _backend = make_core([ConnectionRefusedError(111, "Connection refused")])
    client = Client()
    await call(core, http_scope(), client)
    rid = client.headers[b"x-request-id"].decode()
    assert (client.status, client.json) == (
        502,
        {"error": "bad gateway", "route": "/up", "reason": "upstream refused the connection", "request_id": rid},
    )
    assert b"connection" not in client.headers  # only a client's own mistakes close its connection


async def test_connect_timeout_is_504() -> None:
    core, _backend = make_core([HANG], settings(connect_timeout=5.0))
    client = Client()
    start = trio.current_time()
    await call(core, http_scope(), client)
    assert client.status == 504 and client.json["reason"] == "upstream did not accept a connection in time"
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_response_head_timeout_is_504_and_closes_the_connection() -> None:
    stream = MockStream([HANG])
    core, backend = make_core([stream], settings(read_timeout=60.0))
    client = Client()
    start = trio.current_time()
    await call(core, http_scope(), client)
    rid = client.headers[b"x-request-id"].decode()
    assert client.json == {
        "error": "gateway timeout",
        "route": "/up",
        "reason": "upstream timed out",
        "request_id": rid,
    }
    assert 60.0 <= trio.current_time() - start <= 60.5  # the watchdog ticks every 0.25 s
    assert stream.closed
    assert_no_leak(core, backend)


async def test_upstream_not_reading_the_body_is_a_timeout() -> None:
    class Stuck(MockStream):
        async def send(self, data: bytes) -> None:
            if self.sends == 1:  # takes the head, never the body
                await trio.sleep_forever()
            await super().send(data)

    stream = Stuck([HANG])
    core, backend = make_core([stream], settings(read_timeout=10.0))
    client = Client(body_messages(b"abc"))
    await call(core, http_scope(method="PUT", headers=[(b"host", b"h"), (b"content-length", b"3")]), client)
    assert client.status == 504 and stream.closed
    assert_no_leak(core, backend)


# --- the client leaving --------------------------------------------------------------------


async def test_client_leaving_while_waiting_abandons_the_upstream() -> None:
    stream = MockStream([HANG])
    core, backend = make_core([stream])
    client = Client()

    async def leave_later() -> None:
        await trio.sleep(5)
        client.leave.set()

    async with running(core) as nursery:
        nursery.start_soon(leave_later)
        await core.handle(http_scope(), client.receive, client.send, route(core), 3)
    assert stream.closed and client.sent == []  # nobody to answer
    assert trio.current_time() < 10  # long before the 60 s head timeout
    assert_no_leak(core, backend)


async def test_client_leaving_while_streaming_abandons_the_upstream() -> None:
    stream = MockStream([chunked(b"a" * 10)[:-5], HANG])  # an endless chunked body
    core, backend = make_core([stream])
    client = Client()

    async def leave_when_data_arrives() -> None:
        await client.received.wait()
        client.leave.set()

    async with running(core) as nursery:
        nursery.start_soon(leave_when_data_arrives)
        await core.handle(http_scope(), client.receive, client.send, route(core), 3)
    assert stream.closed and client.status == 200 and not client.complete
    assert trio.current_time() < 1  # at once, not at the idle timeout
    assert_no_leak(core, backend)


async def test_client_gone_during_request_body() -> None:
    stream = MockStream([response()])
    core, backend = make_core([stream])
    client = Client([{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"}])
    await call(core, http_scope(method="POST", headers=[(b"host", b"h"), (b"content-length", b"9")]), client)
    assert client.sent == [] and stream.closed
    assert_no_leak(core, backend)


# --- broken upstreams ---------------------------------------------------------------------


async def test_upstream_closing_mid_body_cuts_the_response_short(caplog: pytest.LogCaptureFixture) -> None:
    stream = MockStream([response(200, b"x" * 1000)[:-500], b""])
    core, backend = make_core([stream])
    client = Client()
    with caplog.at_level(logging.WARNING, "qkhyper.proxy"):
        await call(core, http_scope(), client)
    assert client.status == 200 and not client.complete and stream.closed
    assert [r.getMessage() for r in caplog.records if "middle of the body" in r.getMessage()] != []
    assert_no_leak(core, backend)


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 abc\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",  # nobody asked to switch
        b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 70000,  # over the 64 KiB head limit, still growing
    ],
    ids=["cl+te", "garbage", "bad-status", "unasked-101", "huge-head"],
)
async def test_malformed_response_is_502(reply: bytes) -> None:
    stream = MockStream([reply])
    core, backend = make_core([stream])
    client = Client()
    await call(core, http_scope(), client)
    assert client.status == 502 and client.json["reason"] == "upstream sent a malformed response"
    assert stream.closed
    assert_no_leak(core, backend)


async def test_informational_responses_are_skipped() -> None:
    early = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
    core, backend = make_core([MockStream([early + response(200, b"done")])])
    client = Client()
    await call(core, http_scope(), client)
    assert (client.status, client.body) == (200, b"done")
    assert [m["type"] for m in client.sent] == ["http.response.start", "http.response.body"]
    assert_no_leak(core, backend)


@pytest.mark.parametrize("status", [204, 304])
async def test_bodiless_statuses(status: int) -> None:
    core, backend = make_core([MockStream([response(status, b"", length=False)])])
    client = Client()
    await call(core, http_scope(), client)
    assert (client.status, client.body, client.complete) == (status, b"", True)
    assert core.pool.idle_count(TARGET) == 1
    assert_no_leak(core, backend)


async def test_head_request_gets_no_body() -> None:
    core, backend = make_core([MockStream([response(200, b"", [("Content-Length", "99")], length=False)])])
    client = Client()
    await call(core, http_scope(method="HEAD"), client)
    assert client.status == 200 and client.headers[b"content-length"] == b"99" and client.body == b""
    assert core.pool.idle_count(TARGET) == 1
    assert_no_leak(core, backend)


# --- idle timeouts while streaming ----------------------------------------------------------


async def test_upstream_silent_mid_body_times_out() -> None:
    stream = MockStream([chunked(b"first")[:-5], HANG])
    core, backend = make_core([stream], settings(upstream_idle_timeout=30.0))
    client = Client()
    start = trio.current_time()
    await call(core, http_scope(), client)
    assert client.status == 200 and not client.complete and stream.closed
    assert 30.0 <= trio.current_time() - start <= 30.5
    assert_no_leak(core, backend)


async def test_event_streams_have_no_idle_timeout_by_default() -> None:
    stream = MockStream([chunked(b"data: 1\n\n", headers=[("Content-Type", "text/event-stream")])[:-5], HANG])
    core, _backend = make_core([stream], settings(upstream_idle_timeout=30.0))
    client = Client()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, core, http_scope(), client)
        await trio.sleep(3600)
        assert client.status == 200 and not stream.closed  # an hour later, still open
        nursery.cancel_scope.cancel()
    assert client.headers[b"x-accel-buffering"] == b"no"


async def test_a_route_can_give_event_streams_an_idle_timeout() -> None:
    stream = MockStream([chunked(b"data: 1\n\n", headers=[("Content-Type", "text/event-stream")])[:-5], HANG])
    core, backend = make_core([stream])
    client = Client()
    await call(core, http_scope(), client, route(core, sse_idle_timeout=120.0))
    assert stream.closed and 120 <= trio.current_time() <= 121
    assert_no_leak(core, backend)


async def test_a_slow_client_is_not_an_idle_upstream() -> None:
    """Time the client takes to accept a chunk does not count against upstream_idle_timeout."""
    stream = MockStream([chunked(b"a", b"b")])
    core, backend = make_core([stream], settings(upstream_idle_timeout=10.0))

    class SlowClient(Client):
        async def send(self, message: dict[str, object]) -> None:  # type: ignore[override]
            await trio.sleep(30)
            await super().send(message)

    client = SlowClient()
    await call(core, http_scope(), client)
    assert client.complete and client.body == b"ab"
    assert_no_leak(core, backend)


# --- request bodies -----------------------------------------------------------------------


async def test_request_body_streams_upstream_with_our_framing() -> None:
    stream = MockStream([response()])
    core, backend = make_core([stream])
    client = Client(body_messages(b"ab", b"", b"cd"))
    headers = [(b"host", b"h"), (b"transfer-encoding", b"chunked")]
    await call(core, http_scope(method="POST", headers=headers), client)
    assert stream.written.endswith(b"\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n")
    assert client.status == 200
    assert_no_leak(core, backend)


async def test_silent_client_body_is_408_and_closed() -> None:
    stream = MockStream([response()])
    core, backend = make_core([stream], settings(client_body_timeout=60.0))
    client = Client([{"type": "http.request", "body": b"ab", "more_body": True}])
    client.leave = trio.Event()  # never leaves, never sends more
    headers = [(b"host", b"h"), (b"content-length", b"10")]

    async def receive() -> dict[str, object]:
        if client.messages:
            return client.messages.pop(0)
        await trio.sleep_forever()
        raise AssertionError

    async with running(core):
        await core.handle(http_scope(method="POST", headers=headers), receive, client.send, route(core), 3)
    assert client.status == 408 and client.headers[b"connection"] == b"close"
    assert 60 <= trio.current_time() <= 60.1 and stream.closed
    assert_no_leak(core, backend)


async def test_body_over_the_limit_is_413() -> None:
    core, backend = make_core([MockStream([response()])], settings(max_body_size=4))
    declared = Client(body_messages(b"12345"))
    await call(core, http_scope(method="POST", headers=[(b"host", b"h"), (b"content-length", b"5")]), declared)
    assert declared.status == 413 and backend.connects == []  # refused before connecting
    streamed = Client(body_messages(b"123", b"45"))
    await call(core, http_scope(method="POST", headers=[(b"host", b"h"), (b"transfer-encoding", b"chunked")]), streamed)
    assert streamed.status == 413 and streamed.json["error"] == "request body too large"
    assert_no_leak(core, backend)


async def test_bad_requests_never_reach_a_connection() -> None:
    core, backend = make_core([])
    client = Client()
    await call(core, http_scope(headers=[(b"host", b"a"), (b"host", b"b")]), client)
    assert client.status == 400 and client.json["detail"] == "more than one Host header"
    assert client.headers[b"connection"] == b"close"
    odd = Client()
    await call(core, http_scope(raw_path=b"/up/a b"), odd)  # no server hands this over; still no 500
    assert odd.status == 400 and odd.json["detail"] == "cannot forward this request: Illegal target characters"
    assert backend.connects == []


# --- cleanup on cancellation -----------------------------------------------------------------


@pytest.mark.parametrize("when", ["head", "body"])
async def test_cancellation_closes_the_connection(when: str) -> None:
    script = [HANG] if when == "head" else [chunked(b"x")[:-5], HANG]
    stream = MockStream(script)
    core, backend = make_core([stream])
    client = Client()
    async with running(core):
        with trio.move_on_after(0.5):
            await core.handle(http_scope(), client.receive, client.send, route(core), 3)
    assert stream.closed
    assert_no_leak(core, backend)


# --- redirects and the docs rewrite -------------------------------------------------------------


def follow_slash(route: Route, path: bytes, head: h11.Response) -> bytes | None:
    assert route.prefix == "/up"
    return path + b"/" if head.status_code == 307 else None


async def test_followed_redirect_closes_the_first_connection_and_is_remembered() -> None:
    # The redirect promises 100 bytes and sends 10: draining it would wait for ever.
    redirect = MockStream([b"HTTP/1.1 307 X\r\nLocation: /items/\r\nContent-Length: 100\r\n\r\n0123456789", HANG])
    items = MockStream([response(200, b"[1]"), response(200, b"[2]")])
    core, backend = make_core([redirect, items], follow_redirect=follow_slash)
    first, second = Client(), Client()
    await call(core, http_scope("/up/items"), first)
    await call(core, http_scope("/up/items"), second)
    assert (first.status, first.body, second.body) == (200, b"[1]", b"[2]")
    assert redirect.closed and trio.current_time() < 1
    assert request_line(items.written, 0) == b"GET /items/ HTTP/1.1"
    assert request_line(items.written, 1) == b"GET /items/ HTTP/1.1"  # asked directly the second time
    assert len(backend.opened) == 2
    assert_no_leak(core, backend)


async def test_a_failed_second_exchange_leaves_the_first_connection_pooled() -> None:
    first = MockStream([response(307, b"", [("Location", "/items/")]), b"HTTP/1.1 200 OK\r\nContent-Len", b""])
    core, backend = make_core([first], follow_redirect=follow_slash)
    client = Client()
    await call(core, http_scope("/up/items"), client)
    assert client.status == 502 and first.closed
    assert_no_leak(core, backend)


async def test_a_redirect_follower_that_raises_closes_the_connection() -> None:
    def broken(route: object, path: bytes, head: object) -> bytes | None:
        raise RuntimeError("a bug in the hook")

    stream = MockStream([response(307, b"", [("Location", "/items/")])])
    core, backend = make_core([stream], follow_redirect=broken)
    with pytest.RaisesGroup(RuntimeError):  # the harness's nursery wraps it
        await call(core, http_scope("/up/items"), Client())
    assert stream.closed
    assert_no_leak(core, backend)


@pytest.mark.parametrize(
    ("headers", "chunks"),
    [
        ([(b"content-length", b"6")], [b"ab", b"cdef"]),
        ([(b"transfer-encoding", b"chunked")], [b"abc", b"def", b""]),
    ],
)
async def test_a_followed_redirect_sends_the_same_method_and_body_again(
    headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> None:
    redirect = MockStream([response(307, b"", [("Location", "/items/")])])
    items = MockStream([response(201, b"made")])
    core, backend = make_core([redirect, items], follow_redirect=follow_slash)
    client = Client(body_messages(*chunks))
    await call(core, http_scope("/up/items", method="POST", headers=[(b"host", b"h"), *headers]), client)
    assert (client.status, client.body) == (201, b"made")
    assert request_line(redirect.written) == b"POST /items HTTP/1.1"
    assert request_line(items.written) == b"POST /items/ HTTP/1.1"
    sent_again = items.written.split(b"\r\n\r\n", 1)[1]
    assert sent_again in (b"abcdef", b"6\r\nabcdef\r\n0\r\n\r\n")  # one piece, in the request's own framing
    assert_no_leak(core, backend)


async def test_a_body_too_big_to_keep_gets_the_redirect_passed_on() -> None:
    big = b"x" * (REDIRECT_BODY + 1)
    redirect = MockStream([response(307, b"", [("Location", "/items/")])])
    core, backend = make_core([redirect], follow_redirect=follow_slash)
    client = Client(body_messages(big[:1000], big[1000:]))
    scope = http_scope(
        "/up/items", method="PUT", headers=[(b"host", b"h"), (b"content-length", str(len(big)).encode())]
    )
    await call(core, scope, client)
    assert client.status == 307 and client.headers[b"location"] == b"/up/items/"
    assert len(backend.opened) == 1  # not asked again: the body is gone
    assert_no_leak(core, backend)


async def test_without_the_redirect_cache_every_request_is_redirected_again() -> None:
    redirect = MockStream([response(307, b"", [("Location", "/items/")])])
    items = MockStream([response(200, b"[1]"), response(200, b"[1]")])
    core, _ = make_core([redirect, items], follow_redirect=follow_slash)
    uncached = route(core, redirect_cache=False)
    for _ in range(2):
        client = Client()
        await call(core, http_scope("/up/items"), client, uncached)
        assert client.body == b"[1]"
    assert len(core.forward.redirects) == 0
    # The second request asks /items again (on the pooled connection), not the remembered /items/.
    assert [request_line(items.written, i) for i in (0, 1)] == [b"GET /items/ HTTP/1.1", b"GET /items HTTP/1.1"]


async def test_add_slashes_sends_the_path_with_a_slash_before_the_query() -> None:
    stream = MockStream([response(), response()])
    core, backend = make_core([stream])
    slashing = route(core, add_slashes=True)
    await call(core, http_scope("/up/items", query=b"a=/b"), Client(), slashing)
    await call(core, http_scope("/up/app.js"), Client(), slashing)
    assert [request_line(stream.written, i) for i in (0, 1)] == [b"GET /items/?a=/b HTTP/1.1", b"GET /app.js HTTP/1.1"]
    assert_no_leak(core, backend)


def test_redirect_memo_is_bounded_lru() -> None:
    memo = RedirectMemo(size=2)
    memo.put("/a", b"/1", b"/1/")
    memo.put("/a", b"/2", b"/2/")
    assert memo.get("/a", b"/1") == b"/1/"  # now the most recent
    memo.put("/a", b"/3", b"/3/")
    assert (memo.get("/a", b"/2"), memo.get("/a", b"/1"), len(memo)) == (None, b"/1/", 2)


def upper(route: Route, path: bytes) -> Callable[[bytes], bytes] | None:
    assert route.prefix == "/up"
    return (lambda body: body.upper()) if path == b"/docs" else None


async def test_small_chunked_docs_page_is_rewritten() -> None:
    core, backend = make_core([MockStream([chunked(b"swagger ", b"page")])], rewrite_body=upper)
    client = Client()
    await call(core, http_scope("/up/docs"), client)
    assert (client.status, client.body, client.headers[b"content-length"]) == (200, b"SWAGGER PAGE", b"12")
    assert_no_leak(core, backend)


async def test_docs_body_over_the_rewrite_limit_passes_unmodified() -> None:
    big = b"a" * (REWRITE_LIMIT // 4 + 1)
    core, backend = make_core([MockStream([chunked(big, big, big, big, b"tail")])], rewrite_body=upper)
    client = Client()
    await call(core, http_scope("/up/docs"), client)
    assert client.status == 200 and client.body == big * 4 + b"tail" and client.complete
    assert b"content-length" not in client.headers
    assert max(len(m.get("body", b"")) for m in client.sent) <= REWRITE_LIMIT + len(big)
    assert_no_leak(core, backend)


async def test_a_big_docs_body_cut_short_after_its_start_is_not_answered_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past the rewrite limit the start is sent; an upstream dying after that ends the response short."""
    big = b"a" * (REWRITE_LIMIT // 4 + 1)
    cut = chunked(big, big, big, big, b"tail")[: -len(b"4\r\ntail\r\n0\r\n\r\n")]
    core, backend = make_core([MockStream([cut, b""])], rewrite_body=upper)
    client = Client()
    with caplog.at_level(logging.WARNING, "qkhyper.proxy"):
        await call(core, http_scope("/up/docs"), client)
    starts = [m for m in client.sent if m["type"] == "http.response.start"]
    assert len(starts) == 1 and client.status == 200 and not client.complete
    assert ["; response cut short request_id=" in r.getMessage() for r in caplog.records] == [True]
    assert_no_leak(core, backend)


async def test_docs_with_a_declared_length_over_the_limit_are_not_buffered() -> None:
    body = b"b" * (REWRITE_LIMIT + 1)
    core, backend = make_core([MockStream([response(200, body)])], rewrite_body=upper)
    client = Client()
    await call(core, http_scope("/up/docs"), client)
    assert client.body == body
    assert len(client.sent[1]["body"]) <= READ_SIZE  # streamed from the first chunk: never buffered
    assert_no_leak(core, backend)


# --- several targets ------------------------------------------------------------------------


async def test_refusing_target_is_skipped_for_a_while() -> None:
    core, backend = make_core([ConnectionRefusedError(), MockStream([response(200, b"b")]), MockStream([response()])])
    the_route = route(core, targets=[("a", 1), ("b", 2)])
    client = Client()
    await call(core, http_scope(), client, the_route)
    assert client.body == b"b" and backend.connects == [("a", 1), ("b", 2)]
    again = Client()
    await call(core, http_scope(), again, the_route)
    assert backend.connects[-1] == ("b", 2)  # pooled: "a" not tried again
    assert_no_leak(core, backend)


async def test_every_target_refusing_is_502() -> None:
    core, backend = make_core([ConnectionRefusedError(), ConnectionRefusedError()])
    client = Client()
    await call(core, http_scope(), client, route(core, targets=[("a", 1), ("b", 2)]))
    assert client.status == 502 and len(backend.connects) == 2


def test_errors_have_one_outcome_each() -> None:
    from qkhyper.proxy import errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.ProxyError)]
    leaves = [c for c in classes if not any(o is not c and issubclass(o, c) for o in classes)]
    # ConnectFailed is raised itself, and is the base of TlsFailed (another target may be tried after either).
    assert set(leaves) | {errors.ConnectFailed} == set(errors.OUTCOMES)
    assert errors.outcome(ClientGone("x")).status == 499 and errors.outcome(BadRequest("x")).status == 400


# --- what the logs say ----------------------------------------------------------------------


async def test_access_log_line(caplog: pytest.LogCaptureFixture) -> None:
    core, _ = make_core([MockStream([response(201, b"x")])], settings(access_log=True))
    await trio.sleep(1.5)
    with caplog.at_level(logging.INFO, "qkhyper.access"):
        client = Client()

        class Slow(MockStream):
            async def receive(self, max_bytes: int) -> bytes:
                await trio.sleep(0.25)
                return await super().receive(max_bytes)

        core.pool.backend.streams[0] = Slow([response(201, b"x")])  # type: ignore[attr-defined]
        await call(core, http_scope("/up/items", method="PUT", headers=WITH_ID), client)
    [record] = caplog.records
    assert (
        untimed(record.getMessage())
        == '192.0.2.7 - - [T] "PUT /up/items HTTP/1.1" 201 1 "-" "-" /up up.test:9000 250.0ms req-1'
    )
    fields = ("route", "upstream", "duration_ms", "request_id")
    assert [getattr(record, key) for key in fields] == ["/up", "up.test:9000", 250.0, "req-1"]


async def test_access_log_json_style(caplog: pytest.LogCaptureFixture) -> None:
    core, _ = make_core([MockStream([response(201, b"x")])], settings(access_log=True, access_log_format="json"))
    with caplog.at_level(logging.INFO, "qkhyper.access"):
        await call(core, http_scope("/up/items", method="PUT", headers=WITH_ID), Client())
    [record] = caplog.records
    assert record.getMessage() == "PUT /up/items 201"
    keys = ("client", "method", "path", "status", "bytes", "route", "upstream", "request_id")
    fields = {key: getattr(record, key) for key in keys}
    assert fields == {
        "client": "192.0.2.7",
        "method": "PUT",
        "path": "/up/items",
        "status": 201,
        "bytes": 1,
        "route": "/up",
        "upstream": "up.test:9000",
        "request_id": "req-1",
    }


def untimed(line: str) -> str:
    """An access line with its [time] replaced by [T]: the clock of the line is the wall clock."""
    return re.sub(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\]", "[T]", line, count=1)


async def test_access_log_of_a_failure_and_of_a_client_that_left(caplog: pytest.LogCaptureFixture) -> None:
    streams = [ConnectionRefusedError(111, "refused"), MockStream([HANG])]
    core, _ = make_core(streams, settings(access_log=True, request_id=False))
    gone = Client()
    gone.messages = [{"type": "http.request", "body": b""}]
    refused = Client()
    with caplog.at_level(logging.INFO, "qkhyper.access"):
        await call(core, http_scope(), refused)

        async def leave() -> None:
            await trio.sleep(2)
            gone.leave.set()

        async with running(core) as nursery:
            nursery.start_soon(leave)
            await core.handle(http_scope(), gone.receive, gone.send, route(core), 3)
    lines = [r.getMessage() for r in caplog.records if r.name == "qkhyper.access"]
    size = len(refused.body)  # the proxy's own JSON answer
    assert untimed(lines[0]) == f'192.0.2.7 - - [T] "GET /up/x HTTP/1.1" 502 {size} "-" "-" /up - 0.0ms -'  # IDs off
    assert untimed(lines[1]) == '192.0.2.7 - - [T] "GET /up/x HTTP/1.1" 499 - "-" "-" /up - 2000.0ms -'


async def test_failure_and_retry_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    stale = MockStream([response(), b""], hide_eof=True)
    core, _ = make_core([stale, MockStream([response()]), ConnectionRefusedError(111, "Connection refused")])
    with caplog.at_level(logging.INFO, "qkhyper.proxy"):
        await call(core, http_scope(), Client())
        await call(core, http_scope(headers=[(b"host", b"gw.test"), (b"x-request-id", b"req-0")]), Client())  # retried
        await trio.sleep(5)  # the pooled connection expires
        await call(core, http_scope("/up/gone", headers=WITH_ID), Client())
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "up.test:9000 closed a pooled connection (upstream closed the connection without a response);"
        " retrying on a new one request_id=req-0",
        "GET /up/gone -> /up: connect to up.test:9000 failed: Connection refused request_id=req-1",
    ]
    assert [r.request_id for r in caplog.records] == ["req-0", "req-1"]  # the field of the JSON line


async def test_skipped_target_log_line(caplog: pytest.LogCaptureFixture) -> None:
    core, _ = make_core([ConnectionRefusedError(111, "Connection refused"), MockStream([response()])])
    with caplog.at_level(logging.WARNING, "qkhyper.proxy"):
        await call(core, http_scope(headers=WITH_ID), Client(), route(core, targets=[("a", 1), ("b", 2)]))
    assert [(r.getMessage(), r.request_id) for r in caplog.records] == [
        ("/up: connect to a:1 failed: Connection refused; skipping it for a while request_id=req-1", "req-1")
    ]


async def test_request_ids_off_leave_the_lines_without_one(caplog: pytest.LogCaptureFixture) -> None:
    streams = [ConnectionRefusedError(111, "Connection refused"), ConnectionRefusedError(111, "Connection refused")]
    core, _ = make_core(streams, settings(request_id=False))
    with caplog.at_level(logging.WARNING, "qkhyper.proxy"):
        await call(core, http_scope(headers=WITH_ID), Client(), route(core, targets=[("a", 1), ("b", 2)]))
    assert len(caplog.records) == 2
    assert all("request_id" not in r.getMessage() and not hasattr(r, "request_id") for r in caplog.records)


async def test_cut_short_log_line(caplog: pytest.LogCaptureFixture) -> None:
    core, _ = make_core([MockStream([response(200, b"abcdef")[:-3], b""])])
    with caplog.at_level(logging.WARNING, "qkhyper.proxy"):
        await call(core, http_scope(headers=WITH_ID), Client())
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith("GET /up/x -> /up: upstream closed in the middle of the body (")
    assert message.endswith("); response cut short request_id=req-1") and record.request_id == "req-1"


# --- paths, Location and limits ----------------------------------------------------------------


async def test_location_naming_the_upstream_is_rewritten() -> None:
    redirect = response(302, b"", [("Location", "http://up.test:9000/next?a=1"), ("Link", "</x>")])
    core, _ = make_core([MockStream([redirect, response(303, b"", [("Location", "http://other/x")])])])
    client, other = Client(), Client()
    await call(core, http_scope(headers=[(b"host", b"gw.test:8443")]), client)
    await call(core, http_scope(), other)
    assert client.headers[b"location"] == b"http://gw.test:8443/up/next?a=1"
    assert other.headers[b"location"] == b"http://other/x"


async def test_full_path_route_sends_the_prefix_and_no_forwarded_prefix() -> None:
    stream = MockStream([response(302, b"", [("Location", "http://up.test:9000/up/next")])])
    core, _ = make_core([stream])
    client = Client()
    await call(core, http_scope("/up/a", query=b"q=1"), client, route(core, strip=False))
    assert request_line(stream.written) == b"GET /up/a?q=1 HTTP/1.1"
    assert b"x-forwarded-prefix" not in stream.written
    assert client.headers[b"location"] == b"http://gw.test/up/next"


async def test_raw_path_may_be_missing() -> None:
    stream = MockStream([response()])
    core, _ = make_core([stream])
    scope = http_scope("/up/caf\u00e9")
    scope["raw_path"] = None
    await call(core, scope, Client())
    assert request_line(stream.written) == b"GET /caf%C3%A9 HTTP/1.1"


async def test_body_of_exactly_the_limit_passes() -> None:
    stream = MockStream([response()])
    core, _ = make_core([stream], settings(max_body_size=4))
    client = Client(body_messages(b"12", b"34"))
    await call(core, http_scope(method="POST", headers=[(b"host", b"h"), (b"content-length", b"4")]), client)
    assert client.status == 200 and stream.written.endswith(b"\r\n\r\n1234")


async def test_followed_redirect_keeps_the_query() -> None:
    redirect = MockStream([response(307, b"", [("Location", "/items/?a=1?b")])])
    stream = MockStream([response(200, b"[1]")])
    core, _ = make_core([redirect, stream], follow_redirect=follow_slash)
    await call(core, http_scope("/up/items", query=b"a=1?b"), Client())
    assert request_line(stream.written) == b"GET /items/?a=1?b HTTP/1.1"
    assert core.forward.redirects.get("/up", b"/items") == b"/items/"


async def test_client_leaving_during_a_retried_exchange_is_noticed() -> None:
    stale = MockStream([response(), b""], hide_eof=True)
    fresh = MockStream([HANG])
    core, backend = make_core([stale, fresh])
    await call(core, http_scope(), Client())
    client = Client()

    async def leave_later() -> None:
        await trio.sleep(3)
        client.leave.set()

    async with running(core) as nursery:
        nursery.start_soon(leave_later)
        await core.handle(http_scope(), client.receive, client.send, route(core), 3)
    assert fresh.closed and client.sent == [] and trio.current_time() < 10
    assert_no_leak(core, backend)


# --- edges the mutation run found unpinned -------------------------------------------------------


async def test_a_stale_newest_idle_connection_does_not_hide_an_older_good_one() -> None:
    older, newer = MockStream([response(), response(200, b"older")]), MockStream([response(), b""])
    core, backend = make_core([older, newer])
    async with running(core):
        async with trio.open_nursery() as nursery:
            for client in (Client(), Client()):
                nursery.start_soon(core.handle, http_scope(), client.receive, client.send, route(core), 3)
        idle = core.pool._idle[TARGET]
        assert len(idle) == 2
        idle[:] = [c for c in idle if c.stream is older] + [c for c in idle if c.stream is newer]
        client = Client()
        await core.handle(http_scope(), client.receive, client.send, route(core), 3)
    assert client.body == b"older" and newer.closed and len(backend.opened) == 2
    assert_no_leak(core, backend)


async def test_a_refusing_target_is_skipped_by_later_requests() -> None:
    closing = [MockStream([response(200, b"b", [("Connection", "close")])]) for _ in range(3)]
    core, backend = make_core([ConnectionRefusedError(111, "refused"), *closing])
    the_route = route(core, targets=[("a", 1), ("b", 2)])
    for _ in range(3):
        await call(core, http_scope(), Client(), the_route)
    assert backend.connects == [("a", 1), ("b", 2), ("b", 2), ("b", 2)]
    assert_no_leak(core, backend)


async def test_every_refusing_target_is_marked_down() -> None:
    core, _ = make_core([ConnectionRefusedError(), ConnectionRefusedError()])
    the_route = route(core, targets=[("a", 1), ("b", 2)])
    await call(core, http_scope(), Client(), the_route)
    assert set(the_route.upstreams._down_until) == {("a", 1), ("b", 2)}


async def test_response_heads_up_to_64_kib_pass() -> None:
    head = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 40_000
    core, _ = make_core([MockStream([head, b"\r\nContent-Length: 2\r\n\r\nok"])])
    client = Client()
    await call(core, http_scope(), client)
    assert client.status == 200 and len(client.headers[b"x-big"]) == 40_000


# h11 reads such a head and the forwarder refuses it; llhttp refuses it while parsing.
CL_TE_REFUSED = {
    "h11": "upstream response has both Content-Length and Transfer-Encoding",
    "httptools": "malformed response from upstream: Transfer-Encoding can't be present with Content-Length",
}


async def test_413_and_conflicting_framing_are_logged_with_their_reason(
    caplog: pytest.LogCaptureFixture, upstream_parser: str
) -> None:
    cl_te = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    core, _ = make_core([MockStream([cl_te])], settings(max_body_size=4))
    with caplog.at_level(logging.WARNING, "qkhyper.proxy"):
        await call(core, http_scope(method="POST", headers=[*WITH_ID, (b"content-length", b"5")]), Client())
        await call(core, http_scope(headers=WITH_ID), Client())
    assert [r.getMessage() for r in caplog.records] == [
        "POST /up/x -> /up: request body of 5 bytes over max_body_size (4) request_id=req-1",
        "GET /up/x -> /up: " + CL_TE_REFUSED[upstream_parser] + " request_id=req-1",
    ]


async def test_head_timeout_log_line(caplog: pytest.LogCaptureFixture) -> None:
    core, _ = make_core([MockStream([HANG])], settings(read_timeout=7.0))
    with caplog.at_level(logging.WARNING, "qkhyper.proxy"):
        await call(core, http_scope(headers=WITH_ID), Client())
    assert [r.getMessage() for r in caplog.records] == [
        "GET /up/x -> /up: no response head within 7 s request_id=req-1"
    ]


async def test_client_leaving_during_a_followed_redirect_is_noticed() -> None:
    redirect, stream = MockStream([response(307, b"", [("Location", "/items/")])]), MockStream([HANG])
    core, backend = make_core([redirect, stream], follow_redirect=follow_slash)
    client = Client()

    async def leave_later() -> None:
        await trio.sleep(3)
        client.leave.set()

    async with running(core) as nursery:
        nursery.start_soon(leave_later)
        await core.handle(http_scope("/up/items"), client.receive, client.send, route(core), 3)
    assert stream.closed and client.sent == [] and trio.current_time() < 10
    assert_no_leak(core, backend)


async def test_a_retried_response_knows_its_target() -> None:
    stale = MockStream([response(), b""], hide_eof=True)
    fresh = MockStream([response(302, b"", [("Location", "http://up.test:9000/next")])])
    core, _ = make_core([stale, fresh])
    await call(core, http_scope(), Client())
    client = Client()
    await call(core, http_scope(), client)
    assert client.headers[b"location"] == b"http://gw.test/up/next"


@pytest.mark.parametrize(
    ("method", "status", "rewritten"),
    [("GET", 200, True), ("GET", 299, True), ("GET", 300, False), ("GET", 404, False), ("POST", 200, False)],
)
async def test_only_successful_gets_are_rewritten(method: str, status: int, rewritten: bool) -> None:
    core, _ = make_core([MockStream([response(status, b"page")])], rewrite_body=upper)
    client = Client()
    await call(core, http_scope("/up/docs", method=method), client)
    assert client.status == status and client.body == (b"PAGE" if rewritten else b"page")


async def test_a_body_of_exactly_the_rewrite_limit_is_rewritten_with_one_length() -> None:
    body = b"p" * REWRITE_LIMIT
    core, _ = make_core([MockStream([response(200, body)])], rewrite_body=upper)
    client = Client()
    await call(core, http_scope("/up/docs"), client)
    start = client.sent[0]
    assert client.body == body.upper()
    assert [v for k, v in start["headers"] if k == b"content-length"] == [str(REWRITE_LIMIT).encode()]


async def test_access_log_without_a_client_address(caplog: pytest.LogCaptureFixture) -> None:
    core, _ = make_core([MockStream([response()])], settings(access_log=True))
    scope = http_scope()
    del scope["client"]
    with caplog.at_level(logging.INFO, "qkhyper.access"):
        await call(core, scope, Client())
    assert untimed(caplog.records[0].getMessage()).startswith(
        '- - - [T] "GET /up/x HTTP/1.1" 200 2 "-" "-" /up up.test:9000 '
    )


# --- what the hostile review found -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "first"),
    [
        ("GET", response(204, b"", length=False) + response(200, b"EVIL!", [("X-Smuggled", "yes")])),
        ("GET", response(304, b"", length=False) + b"stale body"),
        ("HEAD", response(200, b"", [("Content-Length", "5")], length=False) + b"12345"),
        ("GET", response(200, b"ok") + b"and more"),
    ],
    ids=["204+response", "304+body", "HEAD+body", "longer-than-length"],
)
async def test_bytes_after_a_response_never_reach_the_next_client(method: str, first: bytes) -> None:
    desync = MockStream([first, response(200, b"wrong")])
    clean = MockStream([response(200, b"right")])
    core, backend = make_core([desync, clean])
    await call(core, http_scope(method=method), Client())
    client = Client()
    await call(core, http_scope(), client)
    assert (client.status, client.body) == (200, b"right") and desync.closed
    assert_no_leak(core, backend)


async def test_a_complete_response_head_over_64_kib_is_502() -> None:
    big = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\nContent-Length: 2\r\n\r\nok"
    core, backend = make_core([MockStream([big])])  # one read: h11 alone would take it
    client = Client()
    await call(core, http_scope(), client)
    assert client.status == 502 and client.json["reason"] == "upstream sent a malformed response"
    assert_no_leak(core, backend)


@pytest.mark.parametrize(("over", "status"), [(0, 200), (1, 502)])
async def test_the_head_limit_counts_every_byte_of_the_head(over: int, status: int) -> None:
    """A head of exactly MAX_HEAD bytes on the wire (status line to the blank line) passes; one more is 502."""
    start = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Fill: "
    fill = MAX_HEAD - len(start) - len(b"\r\n\r\n") + over
    head = start + b"a" * fill + b"\r\n\r\n"
    assert len(head) == MAX_HEAD + over
    core, _ = make_core([MockStream([head + b"ok"])])
    client = Client()
    await call(core, http_scope(), client)
    assert client.status == status


@pytest.mark.parametrize("status", [204, 304])
async def test_no_content_length_on_bodiless_statuses(status: int) -> None:
    core, _ = make_core([MockStream([response(status, b"", [("Content-Length", "42")], length=False)])])
    client = Client()
    await call(core, http_scope(), client)
    assert client.status == status and b"content-length" not in client.headers and client.complete


@pytest.mark.parametrize("status", [600, 999])
async def test_statuses_past_599_are_malformed(status: int) -> None:
    core, backend = make_core([MockStream([response(status, b"x")])])
    client = Client()
    await call(core, http_scope(), client)
    assert client.status == 502
    assert_no_leak(core, backend)


@pytest.mark.parametrize("chunked_body", [False, True], ids=["length", "chunked"])
async def test_a_long_body_returns_its_connection_to_the_pool(chunked_body: bool) -> None:
    """The server says disconnect once the response is complete: that is no client leaving."""
    body = b"z" * (2 * 1024 * 1024)
    reply = chunked(body) if chunked_body else response(200, body)
    stream = MockStream([reply, response(200, b"again")])
    core, backend = make_core([stream])
    await call(core, http_scope(), Client())
    client = Client()
    await call(core, http_scope(), client)
    assert client.body == b"again" and len(backend.opened) == 1
    assert_no_leak(core, backend)


class StuckClient(Client):
    """A client that stops reading: its send blocks once `after` body messages were taken."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    async def send(self, message: dict[str, object]) -> None:  # type: ignore[override]
        if message["type"] == "http.response.body" and self.after == 0:
            await trio.sleep_forever()
        if message["type"] == "http.response.body":
            self.after -= 1
        await super().send(message)  # type: ignore[arg-type]


async def test_a_client_that_stops_reading_a_stream_is_dropped_after_send_timeout() -> None:
    stream = MockStream([chunked(b"a" * 1000, b"b" * 1000)[:-5], HANG])
    core, backend = make_core([stream], settings(send_timeout=30.0))
    client = StuckClient(after=0)
    start = trio.current_time()
    await call(core, http_scope(), client)
    assert stream.closed and 30 <= trio.current_time() - start <= 31
    assert_no_leak(core, backend)


async def test_a_client_that_stops_reading_holds_no_upstream_connection() -> None:
    stream = MockStream([response(200, b"whole body, one read"), response(200, b"next")])
    core, backend = make_core([stream])
    stuck = StuckClient(after=0)
    async with running(core) as nursery:
        nursery.start_soon(core.handle, http_scope(), stuck.receive, stuck.send, route(core), 3)
        await trio.sleep(1)
        assert core.pool.idle_count(TARGET) == 1  # back in the pool while the client is stuck
        other = Client()
        await core.handle(http_scope(), other.receive, other.send, route(core), 3)
        assert other.body == b"next" and len(backend.opened) == 1
        nursery.cancel_scope.cancel()


async def test_static_api_prefix_refuses_what_the_gateway_refuses() -> None:
    """`static`'s /api proxy applies the gateway's `refusal`: CONNECT under the prefix was a traceback."""
    from qkhyper.proxy.core import PrefixProxy

    core, backend = make_core([])
    client = Client()
    async with running(core):
        await PrefixProxy(core, route(core))(http_scope("/up/x", "CONNECT"), client.receive, client.send)
    assert client.status == 400, client.sent
    assert client.json["error"] == "bad request"
    assert backend.opened == []


async def test_an_upstream_that_answers_before_reading_the_body_is_heard() -> None:
    """A 413 sent before the upload ended, then a reset: the client gets the 413, not a 502."""
    early = MockStream([response(413, b"too big")], fail_send_at=2)  # head, first chunk, then broken
    core, backend = make_core([early])
    client = Client(body_messages(b"a" * 10, b"b" * 10, b"c" * 10))
    scope = http_scope(method="POST", headers=[(b"host", b"gw.test"), (b"content-length", b"30")])
    await call(core, scope, client)
    assert (client.status, client.body) == (413, b"too big")
    assert early.closed and len(backend.opened) == 1  # not reused, not retried
    assert_no_leak(core, backend)


async def test_a_reset_during_the_upload_without_an_answer_stays_a_502() -> None:
    core, backend = make_core([MockStream([b""], fail_send_at=2)])
    client = Client(body_messages(b"a" * 10, b"b" * 10, b"c" * 10))
    scope = http_scope(method="POST", headers=[(b"host", b"gw.test"), (b"content-length", b"30")])
    await call(core, scope, client)
    assert client.status == 502 and client.json["reason"] == "upstream closed the connection"
    assert_no_leak(core, backend)


# --- request IDs and trace context ---------------------------------------------------------------

HEX_ID = re.compile(rb"[0-9a-f]{32}")
TRACE = [
    (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    (b"tracestate", b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
]


def upstream_ids(written: bytes) -> list[bytes]:
    """The X-Request-ID values of the request head the proxy wrote upstream."""
    return re.findall(rb"(?im)^x-request-id: ([^\r\n]*)", written.split(b"\r\n\r\n")[0])


async def test_a_clients_request_id_goes_upstream_back_and_into_the_log(caplog: pytest.LogCaptureFixture) -> None:
    reply = response(200, b"ok", [("X-Request-ID", "the-upstreams-own"), ("Traceparent", "00-ab-cd-01")])
    stream = MockStream([reply])
    core, backend = make_core([stream], settings(access_log=True))
    client = Client()
    with caplog.at_level(logging.INFO, "qkhyper.access"):
        await call(core, http_scope(headers=[*WITH_ID, *TRACE]), client)
    assert upstream_ids(stream.written) == [b"req-1"]
    for name, value in TRACE:  # trace context passes unchanged
        assert b"\r\n" + name + b": " + value + b"\r\n" in stream.written
    assert [v for k, v in client.sent[0]["headers"] if k == b"x-request-id"] == [b"req-1"]  # the upstream's replaced
    assert client.headers[b"traceparent"] == b"00-ab-cd-01"
    (line,) = [r.getMessage() for r in caplog.records]
    assert re.fullmatch(
        r'192\.0\.2\.7 - - \[.*\] "GET /up/x HTTP/1\.1" 200 .* /up up\.test:9000 [\d.]+ms req-1', line
    ), line
    assert_no_leak(core, backend)


@pytest.mark.parametrize(
    "sent",
    [
        [],
        [(b"x-request-id", b"has space")],
        [(b"x-request-id", b"\x1b[31mred")],
        [(b"x-request-id", b"a" * 129)],
        [(b"x-request-id", b"one"), (b"x-request-id", b"two")],
    ],
    ids=["none", "space", "escape", "long", "twice"],
)
async def test_a_missing_or_hostile_request_id_is_replaced(
    sent: list[tuple[bytes, bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    stream = MockStream([response()])
    core, _ = make_core([stream], settings(access_log=True))
    client = Client()
    with caplog.at_level(logging.INFO, "qkhyper.access"):
        await call(core, http_scope(headers=[(b"host", b"gw.test"), *sent]), client)
    (chosen,) = upstream_ids(stream.written)
    assert HEX_ID.fullmatch(chosen) and client.headers[b"x-request-id"] == chosen
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.endswith(" " + chosen.decode())
    for _, value in sent:
        assert value not in stream.written and value.decode("latin-1") not in line


async def test_each_request_gets_its_own_id() -> None:
    core, _ = make_core([MockStream([response(), response()])])
    first, second = Client(), Client()
    await call(core, http_scope(), first)
    await call(core, http_scope(), second)
    assert first.headers[b"x-request-id"] != second.headers[b"x-request-id"]


async def test_the_proxys_own_answers_carry_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    core, backend = make_core([ConnectionRefusedError(111, "Connection refused")])
    refused, bad = Client(), Client()
    with caplog.at_level(logging.WARNING, "qkhyper.proxy"):
        await call(core, http_scope(), refused)
        await call(core, http_scope(headers=[*WITH_ID, (b"host", b"other")]), bad)  # 400 before any connection
    rid = refused.headers[b"x-request-id"]
    assert HEX_ID.fullmatch(rid) and refused.json["request_id"] == rid.decode()
    assert (bad.status, bad.headers[b"x-request-id"], bad.json["request_id"]) == (400, b"req-1", "req-1")
    assert [r.getMessage() for r in caplog.records] == [
        f"GET /up/x -> /up: connect to up.test:9000 failed: Connection refused request_id={rid.decode()}",
        "GET /up/x -> /up: more than one Host header request_id=req-1",
    ]
    assert backend.connects == [TARGET]


async def test_a_followed_redirect_asks_again_with_the_same_id() -> None:
    redirect = MockStream([response(307, b"", [("Location", "/items/")])])
    final = MockStream([response(200, b"[]")])
    core, _ = make_core([redirect, final], follow_redirect=lambda r, p, e: b"/items/" if e.status_code == 307 else None)
    client = Client()
    await call(core, http_scope("/up/items", headers=WITH_ID), client)
    assert upstream_ids(redirect.written) == upstream_ids(final.written) == [b"req-1"]
    assert client.headers[b"x-request-id"] == b"req-1"


async def test_request_ids_off_change_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """`request_id = false`: the header crosses both ways like any other, and none is made or added."""
    stream = MockStream([response(200, b"ok", [("X-Request-ID", "up-1")])])
    core, _ = make_core([stream], settings(request_id=False))
    dead, _ = make_core([ConnectionRefusedError(111, "Connection refused")], settings(request_id=False))
    client, refused = Client(), Client()
    with caplog.at_level(logging.WARNING, "qkhyper.proxy"):
        await call(core, http_scope(headers=[*WITH_ID, (b"x-request-id", b"a b")]), client)
        await call(dead, http_scope(), refused)
    assert upstream_ids(stream.written) == [b"req-1", b"a b"]
    assert [v for k, v in client.sent[0]["headers"] if k == b"x-request-id"] == [b"up-1"]
    assert b"x-request-id" not in refused.headers and "request_id" not in refused.json
    assert [r.getMessage() for r in caplog.records] == [
        "GET /up/x -> /up: connect to up.test:9000 failed: Connection refused"
    ]


async def test_a_route_that_does_not_follow_passes_the_redirect_on() -> None:
    redirect = MockStream([response(307, b"", [("Location", "/items/")])])
    core, backend = make_core([redirect], follow_redirect=follow_slash)
    client = Client()
    await call(core, http_scope("/up/items"), client, route(core, follow_redirects=False))
    assert client.status == 307 and client.headers[b"location"] == b"/up/items/"
    assert len(backend.opened) == 1
    assert_no_leak(core, backend)


@pytest.mark.parametrize("forwarded_host", [True, False])
async def test_x_forwarded_host_per_route(forwarded_host: bool) -> None:
    stream = MockStream([response()])
    core, _ = make_core([stream])
    await call(core, http_scope("/up/x"), Client(), route(core, forwarded_host=forwarded_host))
    assert (b"\r\nx-forwarded-host: " in stream.written.lower()) is forwarded_host
    assert b"\r\nx-forwarded-proto: http\r\n" in stream.written.lower()
