"""Moving bodies through the proxy: the request body upstream, the response body back.

Each direction goes chunk by chunk as it arrives, so memory stays flat for any
size and `await send(...)` is the back-pressure. Each direction has its own
clock: `client_body_timeout` is the longest the client may stay silent in the
middle of its body, `upstream_idle_timeout` (or `sse_idle_timeout`) the longest
the upstream may stay silent in the middle of its answer. Time spent waiting
for the *other* side to take a chunk counts against neither.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import anyio
import h11

from ..asgi.types import Receive, Send
from .connection import UpstreamConnection
from .deadline import SendDeadline
from .errors import BodyTooLarge, ClientBodyTimeout, ClientGone, ResponseHeadTimeout, UpstreamIdleTimeout
from .protocol import RequestHead
from .watchdog import Watchdog


class RequestBody:
    """The request body: read from the client once, sent upstream as it arrives."""

    def __init__(
        self,
        receive: Receive,
        head: RequestHead,
        *,
        limit: int,
        client_timeout: float,
        send_timeout: float,
        keep: int = 0,
    ):
        """`keep`: copy up to this many bytes while sending, so a followed redirect can send the body again."""
        self.receive = receive
        self.empty = head.length == 0
        self.limit = limit
        self.client_timeout = client_timeout
        self.send_timeout = send_timeout
        self.consumed = False
        self.keep = keep
        self.kept: bytearray | None = bytearray() if keep else None  # None once over `keep` (or keeping is off)
        self.complete = False  # the whole body was read from the client

    @property
    def replayable(self) -> bool:
        """Whether `send_to` can send it (again): empty, unread, or read whole into `kept`."""
        return self.empty or not self.consumed or (self.complete and self.kept is not None)

    async def send_to(self, conn: UpstreamConnection) -> None:
        """Send the body and its end.

        Raises:
            ClientGone, ClientBodyTimeout, BodyTooLarge: the client's side failed.
            ResponseHeadTimeout: the upstream took no chunk within read_timeout.
            UpstreamClosed: the connection broke.
        """
        if self.empty:
            await conn.send_end()
            return
        if self.consumed:
            assert self.replayable, "a body not kept whole can be sent only once"
            await self._send_kept(conn)
            return
        self.consumed = True
        size = 0
        waiting_for_client = True
        with anyio.CancelScope() as scope:
            more = True
            while more:
                waiting_for_client = True
                scope.deadline = anyio.current_time() + self.client_timeout
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone("the client left during the request body")
                chunk = message.get("body", b"")
                more = message.get("more_body", False)
                size += len(chunk)
                if self.limit and size > self.limit:
                    raise BodyTooLarge(f"request body over {self.limit} bytes")
                if self.kept is not None:
                    if size <= self.keep:
                        self.kept += chunk
                    else:
                        self.kept = None
                waiting_for_client = False
                scope.deadline = anyio.current_time() + self.send_timeout
                if chunk:
                    await conn.send_body(chunk)
            self.complete = True
            await conn.send_end()
            scope.deadline = math.inf
        if scope.cancelled_caught:
            if waiting_for_client:
                raise ClientBodyTimeout(f"no request body data for {self.client_timeout:g} s")
            raise ResponseHeadTimeout(f"upstream took no request body data for {self.send_timeout:g} s")

    async def _send_kept(self, conn: UpstreamConnection) -> None:
        """The kept body again, for a followed redirect, within `send_timeout`."""
        assert self.kept is not None
        with anyio.move_on_after(self.send_timeout) as scope:
            if self.kept:
                await conn.send_body(bytes(self.kept))
            await conn.send_end()
        if scope.cancelled_caught:
            raise ResponseHeadTimeout(f"upstream took no request body data for {self.send_timeout:g} s")


class ResponseBody:
    """Relays the upstream's body to the client, each chunk as it arrives; owns the connection.

    Deadlines: while it waits for the upstream, `idle` seconds (0: no limit) is
    the watchdog's deadline; while the client takes a chunk, `send_timeout`
    (nginx's `send_timeout`). A body that came whole with its head never waits
    for the upstream, so it costs no watchdog entry.

    The connection goes back to the pool (`release`) as soon as the upstream's
    response has ended, before the last chunk is handed to the client: a client
    that reads slowly holds its own request, never an upstream connection. On
    any failure before that, the connection is closed.
    """

    def __init__(
        self,
        conn: UpstreamConnection,
        send: Send,
        watchdog: Watchdog,
        *,
        idle: float,
        send_timeout: float,
        release: Callable[[UpstreamConnection], Awaitable[None]],
    ) -> None:
        self.conn = conn
        self.send = send
        self.watchdog = watchdog
        self.idle = idle
        self.send_timeout = send_timeout
        self.release = release
        self.token: int | None = None
        self.released = False

    async def relay(self, receive: Receive | None) -> None:
        """Send the whole body on; with `receive`, stop as soon as the client leaves.

        Raises:
            UpstreamClosed, MalformedResponse, UpstreamIdleTimeout, ClientGone
        """
        try:
            if receive is None:
                await self._relay()
            else:
                await self._relay_watched(receive)
        finally:
            self._unwatch()

    async def read_up_to(self, limit: int) -> tuple[list[bytes], bool]:
        """Read chunks until the end (then release) or more than `limit` bytes; and whether it was the end."""
        chunks: list[bytes] = []
        size = 0
        try:
            while size <= limit:
                event = await self._next()
                if isinstance(event, h11.EndOfMessage):
                    await self.end()
                    return chunks, True
                assert isinstance(event, h11.Data)
                chunks.append(event.data)
                size += len(event.data)
        finally:
            self._unwatch()
        return chunks, False

    async def end(self) -> None:
        """The upstream's response is over: the connection goes back to the pool."""
        self._unwatch()
        self.released = True
        await self.release(self.conn)

    async def close(self) -> None:
        """After a failure: close the connection, unless it went back to the pool already."""
        if not self.released:
            await self.conn.aclose()

    async def _next(self) -> h11.Event:
        event = self.conn.peek()
        return await self._wait() if event is h11.NEED_DATA else event  # type: ignore[return-value]

    async def _wait(self) -> h11.Event:
        """The next event from the network, under the idle deadline."""
        if self.token is None:
            self.token = self.watchdog.watch(self.conn, self.idle, self._expired, None)
        else:
            self.watchdog.extend(self.token, self.idle)
        try:
            return await self.conn.next_event()
        finally:
            self.watchdog.pause(self.token)

    def _unwatch(self) -> None:
        if self.token is not None:
            self.watchdog.unwatch(self.token)
            self.token = None

    def _expired(self) -> UpstreamIdleTimeout:
        return UpstreamIdleTimeout(f"upstream sent nothing for {self.idle:g} s in the middle of the body")

    async def _relay(self) -> None:
        event = await self._next()
        if isinstance(event, h11.EndOfMessage):
            await self.end()
            await self.send({"type": "http.response.body", "body": b""})
            return
        assert isinstance(event, h11.Data)
        after = self.conn.peek()
        if isinstance(after, h11.EndOfMessage):  # the whole body at once (most small responses): no deadline
            await self.end()
            await self.send({"type": "http.response.body", "body": event.data})
            return
        deadline = SendDeadline(self.send_timeout)
        with deadline.scope:
            await self._relay_chunks(event, after, deadline)
        if deadline.expired:
            raise self._client_too_slow()

    async def _relay_chunks(
        self, event: h11.Data, after: h11.Event | type[h11.NEED_DATA], deadline: SendDeadline
    ) -> None:
        """From a chunk that is not the last (`after` is what follows it, if it came already) to the end."""
        conn = self.conn
        while True:
            deadline.arm()  # within send_timeout: the connection is still held meanwhile
            await self.send({"type": "http.response.body", "body": event.data, "more_body": True})
            deadline.disarm()
            following = await self._wait() if after is h11.NEED_DATA else after
            if isinstance(following, h11.EndOfMessage):
                await self.end()
                await self.send({"type": "http.response.body", "body": b""})
                return
            assert isinstance(following, h11.Data)
            event = following
            after = conn.peek()
            if isinstance(after, h11.EndOfMessage):
                await self.end()
                await self.send({"type": "http.response.body", "body": event.data})
                return

    async def send_more(self, data: bytes) -> None:
        """One chunk that is not the last, within send_timeout (a docs page too big to edit, for one)."""
        with anyio.move_on_after(self.send_timeout or math.inf) as scope:
            await self.send({"type": "http.response.body", "body": data, "more_body": True})
        if scope.cancelled_caught:
            raise self._client_too_slow()

    def _client_too_slow(self) -> ClientGone:
        return ClientGone(f"the client took no data for {self.send_timeout:g} s")

    async def _relay_watched(self, receive: Receive) -> None:
        """As `_relay`, for long or endless bodies: a client that leaves ends it at once."""
        failure: BaseException | None = None
        async with anyio.create_task_group() as group:

            async def watch_client() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                # Servers also say disconnect once the response is complete: only a
                # client gone before the upstream's end abandons the connection.
                if not self.released:
                    await self.conn.abort(ClientGone("the client disconnected; upstream response abandoned"))

            group.start_soon(watch_client)
            try:
                await self._relay()
            except Exception as exc:  # raised after the group, not wrapped in an exception group
                failure = exc
            group.cancel_scope.cancel()
        if failure is not None:
            raise failure
