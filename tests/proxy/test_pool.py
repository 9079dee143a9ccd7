"""The pool, the connection and the target order, each on its own: what they raise and what they keep."""

from __future__ import annotations

import h11
import pytest
import trio

from qkhyper.proxy.connection import UpstreamConnection
from qkhyper.proxy.errors import (
    BadRequest,
    ClientGone,
    ConnectFailed,
    ConnectTimeout,
    MalformedResponse,
    UpstreamClosed,
)
from qkhyper.proxy.mock import HANG, MockBackend, MockStream
from qkhyper.proxy.pool import DOWN_FOR, Pool, Upstreams
from qkhyper.proxy.protocol import RequestHead
from tests.proxy.harness import TARGET, codec, response

pytestmark = pytest.mark.anyio

GET = RequestHead(b"GET", b"/", [(b"host", b"h")], 0, False)


def make_pool(streams: list[object], **kw: float) -> tuple[Pool, MockBackend]:
    backend = MockBackend(streams)  # type: ignore[arg-type]
    options = {"max_idle": 2, "idle_timeout": 4.0, "connect_timeout": 5.0, **kw}
    return Pool(backend, clock=trio.current_time, codec=codec(), **options), backend  # type: ignore[arg-type]


def connection(stream: MockStream) -> UpstreamConnection:
    return UpstreamConnection(stream, TARGET, codec=codec())


async def exchange(conn: UpstreamConnection) -> list[h11.Event]:
    await conn.send_head(GET)
    await conn.send_end()
    events = [await conn.next_event()]
    while not isinstance(events[-1], h11.EndOfMessage):
        events.append(await conn.next_event())
    return events


async def test_connect_errors_say_where_and_why() -> None:
    pool, _ = make_pool([ConnectionRefusedError(111, "Connection refused"), HANG])
    with pytest.raises(ConnectFailed) as refused:
        await pool.connect(TARGET)
    assert str(refused.value) == "connect to up.test:9000 failed: Connection refused"
    start = trio.current_time()
    with pytest.raises(ConnectTimeout) as slow:
        await pool.connect(TARGET)
    assert str(slow.value) == "connect to up.test:9000 timed out after 5 s"
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_connect_error_without_strerror_still_names_it() -> None:
    pool, _ = make_pool([OSError("no route")])
    with pytest.raises(ConnectFailed, match=r"^connect to up.test:9000 failed: no route$"):
        await pool.connect(TARGET)


async def test_release_pools_only_finished_connections_lifo() -> None:
    streams = [MockStream([response()]) for _ in range(4)]
    pool, _ = make_pool(streams)  # type: ignore[arg-type]
    conns = [await pool.connect(TARGET) for _ in range(3)]
    await exchange(conns[0])
    await exchange(conns[1])
    await pool.release(conns[2])  # never used: not DONE, so closed
    await pool.release(conns[0])
    await pool.release(conns[1])
    assert streams[2].closed and pool.idle_count(TARGET) == 2
    assert await pool.acquire(TARGET) == (conns[1], True)
    assert await pool.acquire(TARGET) == (conns[0], True)
    assert (await pool.acquire(TARGET))[1] is False  # a new one: none left idle


async def test_release_over_max_idle_closes() -> None:
    streams = [MockStream([response()]) for _ in range(3)]
    pool, _ = make_pool(streams)  # type: ignore[arg-type]
    conns = [await pool.connect(TARGET) for _ in range(3)]
    for conn in conns:
        await exchange(conn)
        await pool.release(conn)
    assert [s.closed for s in streams] == [False, False, True]


async def test_an_aborted_connection_is_never_pooled_even_when_done() -> None:
    stream = MockStream([response()])
    pool, _ = make_pool([stream])
    conn = await pool.connect(TARGET)
    await exchange(conn)
    await conn.abort(ClientGone("gone"))
    await pool.release(conn)
    assert pool.idle_count(TARGET) == 0 and stream.closed


async def test_idle_expiry_closes_everything_older() -> None:
    streams = [MockStream([response()]), MockStream([response()] * 3), MockStream()]
    pool, _ = make_pool(streams)  # type: ignore[arg-type]
    first, second = await pool.connect(TARGET), await pool.connect(TARGET)
    await exchange(first)
    await pool.release(first)  # idle since 0
    await trio.sleep(1)
    await exchange(second)
    await pool.release(second)  # idle since 1
    await trio.sleep(3)
    assert await pool.acquire(TARGET) == (second, True)  # 3 s idle: still good; first stays, 4 s idle
    await exchange(second)
    await pool.release(second)  # idle since 4
    await trio.sleep(3.99)
    assert await pool.acquire(TARGET) == (second, True)
    await exchange(second)
    await pool.release(second)  # idle since 7.99
    await trio.sleep(4)
    conn, reused = await pool.acquire(TARGET)  # the newest has expired: so has everything below it
    assert not reused and conn.stream is streams[2]
    assert streams[0].closed and streams[1].closed and pool.idle_count(TARGET) == 0


async def test_connection_recycles_only_after_a_whole_exchange() -> None:
    conn = connection(MockStream([response(), response()]))
    assert not conn.recycle(1.0)
    await conn.send_head(GET)
    assert not conn.recycle(1.0)  # request not finished
    await conn.send_end()
    assert conn.wrote and not conn.heard
    await conn.next_event()
    assert conn.heard and not conn.recycle(2.0)  # response not finished
    assert isinstance(await conn.next_event(), h11.Data)
    assert isinstance(await conn.next_event(), h11.EndOfMessage)
    assert conn.recycle(3.0) and conn.idle_since == 3.0 and not conn.wrote and not conn.heard
    assert [type(e) for e in await exchange(conn)] == [h11.Response, h11.Data, h11.EndOfMessage]


@pytest.mark.parametrize(
    ("script", "before_response", "message"),
    [
        ([b""], True, "upstream closed the connection without a response"),
        ([ConnectionResetError("reset")], True, "upstream connection lost: ConnectionResetError('reset')"),
        ([b"HTTP/1.1 200 OK\r\n", b""], False, "upstream closed the connection in the middle of the response head"),
        ([b"HTTP/1.1 200 OK\r\n", ConnectionResetError("x")], False, "upstream connection lost"),
        ([response(200, b"abc")[:-1], b""], False, "upstream closed in the middle of the body"),
    ],
)
async def test_closes_are_upstream_closed(script: list[object], before_response: bool, message: str) -> None:
    conn = connection(MockStream(script))  # type: ignore[arg-type]
    with pytest.raises(UpstreamClosed) as info:
        await exchange(conn)
    assert info.value.before_response is before_response
    assert str(info.value).startswith(message)
    assert not conn.recycle(1.0)


async def test_garbage_is_malformed() -> None:
    conn = connection(MockStream([b"SPDY/3 200 OK\r\n\r\n"]))
    with pytest.raises(MalformedResponse, match=r"^malformed response from upstream: "):
        await exchange(conn)


async def test_send_failure_is_a_close_before_any_byte() -> None:
    conn = connection(MockStream([], fail_send_at=0))
    with pytest.raises(UpstreamClosed) as info:
        await conn.send_head(GET)
    assert info.value.before_response and not conn.wrote
    assert str(info.value) == "sending to upstream failed: BrokenPipeError('upstream connection is broken')"


async def test_a_body_longer_than_announced_is_a_bad_request() -> None:
    conn = connection(MockStream([]))
    await conn.send_head(RequestHead(b"POST", b"/", [(b"host", b"h"), (b"content-length", b"1")], 1, False))
    with pytest.raises(BadRequest, match="^request body does not match its Content-Length: "):
        await conn.send_body(b"too long")


async def test_abort_wins_over_the_error_it_causes() -> None:
    stream = MockStream([HANG])
    conn = connection(stream)
    await conn.send_head(GET)
    await conn.send_end()
    await conn.abort(ClientGone("first"))
    await conn.abort(ClientGone("second"))
    with pytest.raises(ClientGone, match="^first$"):
        await conn.next_event()
    assert stream.closed and conn.closed


def test_targets_rotate_and_skip_the_down_ones_for_ten_seconds() -> None:
    a, b, c = ("a", 1), ("b", 2), ("c", 3)
    upstreams = Upstreams([a, b, c])
    assert [upstreams.order(0)[0] for _ in range(4)] == [a, b, c, a]
    upstreams = Upstreams([a, b, c])
    upstreams.mark_down(a, now=100)
    assert upstreams.order(100) == [b, c, a]
    assert upstreams.order(100 + DOWN_FOR - 0.01) == [b, c, a]
    assert upstreams.order(100 + DOWN_FOR) == [c, a, b]  # back, exactly on time


def test_a_single_target_is_never_down() -> None:
    upstreams = Upstreams([("a", 1)])
    upstreams.mark_down(("a", 1), now=0)
    assert upstreams._down_until == {} and upstreams.order(1) == [("a", 1)]


def test_two_targets_can_be_down() -> None:
    upstreams = Upstreams([("a", 1), ("b", 2)])
    upstreams.mark_down(("a", 1), now=0)
    assert upstreams.order(1) == [("b", 2), ("a", 1)] and upstreams.order(2) == [("b", 2), ("a", 1)]


async def test_first_tries_each_target_in_order_until_one_takes_the_request() -> None:
    """Three targets, the first and the last refusing: the middle one answers, the last is never tried."""
    a, b, c = ("a", 1), ("b", 2), ("c", 3)
    tried: list[tuple[str, int]] = []

    async def attempt(target: tuple[str, int]) -> str:
        tried.append(target)
        if target != b:
            raise ConnectFailed(f"{target} refused")
        return "answered"

    assert await Upstreams([a, b, c]).first(attempt, 0, "/x") == "answered"
    assert tried == [a, b]
