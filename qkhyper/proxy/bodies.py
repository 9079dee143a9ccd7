"""Moving bodies through the proxy: the request body upstream, the response body back.

Each direction goes chunk by chunk as it arrives, so memory stays flat for any
size and `await send(...)` is the back-pressure.
"""

from __future__ import annotations

import anyio
import h11

from ..asgi.types import Receive, Send
from .connection import UpstreamConnection, UpstreamError
from .protocol import IDEMPOTENT, RequestHead


class RequestBody:
    """The request body: read from the client once, sent on as it arrives.

    A body that fit in the first message is kept, so a request whose pooled
    connection turned out closed can be sent again.
    """

    def __init__(self, receive: Receive, head: RequestHead, limit: int) -> None:
        self.receive = receive
        self.expected = head.length != 0
        self.limit = limit
        self.first: bytes | None = None if self.expected else b""
        self.complete = not self.expected
        self.consumed = False

    def replayable(self, head: RequestHead) -> bool:
        return head.method.decode() in IDEMPOTENT and self.first == b"" and self.complete

    async def send_to(self, conn: UpstreamConnection) -> None:
        if not self.expected:
            await conn.send(h11.EndOfMessage())
            return
        if self.first is not None and self.complete:
            if self.first:
                await conn.send(h11.Data(data=self.first))
            await conn.send(h11.EndOfMessage())
            return
        if self.consumed:
            raise UpstreamError("closed", "request body already sent to a failed upstream")
        self.consumed = True
        size = 0
        more = True
        while more:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise UpstreamError("closed", "client left during the request body")
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if self.limit and size > self.limit:
                raise UpstreamError("too_large", f"request body over {self.limit} bytes")
            if self.first is None:
                self.first = chunk
                self.complete = not more
            if chunk:
                await conn.send(h11.Data(data=chunk))
        await conn.send(h11.EndOfMessage())


async def stream_body(conn: UpstreamConnection, send: Send, label: str) -> None:
    """Send each upstream chunk on; a chunk followed by the end goes as the last one."""
    try:
        event = await conn.next_event()
        while True:
            if isinstance(event, h11.Data):
                after = conn.peek()
                if isinstance(after, h11.EndOfMessage):
                    await send({"type": "http.response.body", "body": event.data})
                    return
                await send({"type": "http.response.body", "body": event.data, "more_body": True})
                event = await conn.next_event() if after is h11.NEED_DATA else after  # type: ignore[assignment]
            elif isinstance(event, h11.EndOfMessage):
                await send({"type": "http.response.body", "body": b""})
                return
            else:  # h11.ConnectionClosed before the end
                raise UpstreamError("closed", "connection closed")
    except UpstreamError as exc:
        if exc.kind == "client_left":
            raise
        raise MidBody(label) from None


async def stream_watched(conn: UpstreamConnection, send: Send, receive: Receive, label: str) -> None:
    """Stream a long or endless body; if the client leaves, stop and drop the upstream connection."""
    failure: UpstreamError | None = None
    async with anyio.create_task_group() as group:

        async def watch_client() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            conn.client_left = True
            await conn.aclose()

        group.start_soon(watch_client)
        try:
            await stream_body(conn, send, label)
        except UpstreamError as exc:  # raised after the group, not wrapped in an exception group
            failure = exc
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure


class MidBody(UpstreamError):
    """The upstream broke off a body already being sent: the client's response can only end short."""

    def __init__(self, label: str) -> None:
        super().__init__("closed", f"upstream of {label} closed in the middle of the body")


async def drain(conn: UpstreamConnection) -> None:
    while not isinstance(event := await conn.next_event(), (h11.EndOfMessage, h11.ConnectionClosed)):
        del event
