"""A WebSocket session once both handshakes are done: messages relayed both ways, each with a deadline.

The client's side is the ASGI server (`receive`/`send`), the upstream's a
wsproto connection over the proxy's network stream. Either side that stops
taking messages for `send_timeout` ends the session (1011 towards the
upstream, 1001 towards the client); a message over `ws_max_message_size`
closes both with 1009; close codes pass both ways, with 1005, 1006 and 1015
(which may not be sent on the wire) as 1000 and 1011. The access line of the
session (`accesslog.SessionLine`) counts what crossed.
"""

from __future__ import annotations

import logging
import math

import anyio
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    TextMessage,
)
from wsproto.utilities import ProtocolError

from ..asgi.types import Message as AsgiMessage
from ..asgi.types import Receive, Send
from .accesslog import SessionLine
from .backend import NetworkStream
from .connection import READ_SIZE
from .deadline import SendDeadline
from .protocol import (
    log_extra,
    log_request_id,
)

log = logging.getLogger("qkhyper.proxy")

_WIRE_CODES = {1005: 1000, 1006: 1011, 1015: 1011}
MESSAGE_TOO_BIG = 1009
# After the client's close went upstream: how long the upstream may take to answer it.
CLOSE_TIMEOUT = 1.0


def wire_code(code: int | None) -> int:
    return _WIRE_CODES.get(code or 1005, code or 1000)


class _Stuck(Exception):
    """Internal: a peer took nothing within send_timeout, or is gone; the session ends."""

    def __init__(self, upstream: bool, detail: str) -> None:
        super().__init__(detail)
        self.upstream = upstream


def _stuck(deadline: SendDeadline) -> _Stuck | None:
    """Why a direction ended, if its send deadline ended it."""
    if not deadline.expired:
        return None
    return _Stuck(deadline.peer == "upstream", f"the {deadline.peer} took nothing for {deadline.timeout:g} s")


class Bridge:
    """The open session: client messages go upstream, upstream messages come back, until one side closes.

    `ws` is wsproto's frame-level `Connection` (the `connection` of the
    `WSConnection` that did the handshake), not the `WSConnection` itself:
    that one keeps its handshake, h11 connection included, for the whole
    session, and asks it for events on every read (issue 13, `scale-ws`).

    Every send, either way, has `send_timeout`: a peer that stops reading ends
    the session (the other side is told 1011, or 1001 when it is the upstream)
    instead of holding messages and both sockets for ever.
    """

    def __init__(
        self,
        receive: Receive,
        send: Send,
        stream: NetworkStream,
        ws: Connection,
        max_message: int,
        send_timeout: float,
        line: SessionLine,
    ) -> None:
        self.receive = receive
        self.send = send
        self.stream = stream
        self.ws = ws
        self.max_message = max_message
        self.send_timeout = send_timeout
        self.line = line  # its access line: the message bytes either way are added to it
        self.tag = log_request_id(line.request_id)  # ends the session's log lines: ` request_id=...`
        self.extra = log_extra(line.request_id)  # and is their `request_id` field in JSON
        self.client_gone = False

    async def run(self) -> None:
        upstream_done = anyio.Event()
        stuck: _Stuck | None = None
        async with anyio.create_task_group() as group:

            async def client_to_upstream() -> None:
                nonlocal stuck
                deadline = SendDeadline(self.send_timeout)
                with deadline.scope:
                    try:
                        await self._client_to_upstream(deadline)
                        with anyio.move_on_after(CLOSE_TIMEOUT):  # let the upstream answer the close
                            await upstream_done.wait()
                    except _Stuck as exc:
                        stuck = exc
                stuck = stuck or _stuck(deadline)
                group.cancel_scope.cancel()

            async def upstream_to_client() -> None:
                nonlocal stuck
                deadline = SendDeadline(self.send_timeout)
                with deadline.scope:
                    try:
                        code, reason = await self._upstream_to_client(deadline)
                        upstream_done.set()
                        await self._to_client({"type": "websocket.close", "code": code, "reason": reason}, deadline)
                    except _Stuck as exc:
                        stuck = exc
                stuck = stuck or _stuck(deadline)
                group.cancel_scope.cancel()

            group.start_soon(client_to_upstream)
            group.start_soon(upstream_to_client)
        if stuck is not None:
            await self._end_stuck(stuck)

    async def _end_stuck(self, stuck: _Stuck) -> None:
        log.warning("websocket: %s; closing the session%s", stuck, self.tag, extra=self.extra)
        with anyio.move_on_after(CLOSE_TIMEOUT):
            unbounded = SendDeadline(math.inf)  # CLOSE_TIMEOUT bounds it
            if stuck.upstream:
                message: AsgiMessage = {"type": "websocket.close", "code": 1011, "reason": "upstream not reading"}
                await self._to_client(message, unbounded)
            else:
                await self._send_upstream(CloseConnection(code=1001, reason="client not reading"), unbounded)

    async def _client_to_upstream(self, deadline: SendDeadline) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "websocket.disconnect":
                self.client_gone = True
                code = wire_code(message.get("code"))
                await self._send_upstream(CloseConnection(code=code, reason=message.get("reason") or ""), deadline)
                return
            text, data = message.get("text"), message.get("bytes")
            size = len(text.encode()) if text is not None else len(data or b"")
            if size > self.max_message:
                await self._too_big(deadline)
                return
            if text is not None:
                await self._send_upstream(TextMessage(data=text), deadline)
            elif data is not None:
                await self._send_upstream(BytesMessage(data=data), deadline)
            self.line.received += size

    async def _too_big(self, deadline: SendDeadline) -> None:
        reason = f"message over {self.max_message} bytes"
        await self._send_upstream(CloseConnection(code=MESSAGE_TOO_BIG, reason=reason), deadline)
        await self._to_client({"type": "websocket.close", "code": MESSAGE_TOO_BIG, "reason": reason}, deadline)
        self.client_gone = True

    async def _upstream_to_client(self, deadline: SendDeadline) -> tuple[int, str]:
        """Relay upstream messages until it closes; the close code and reason for the client."""
        parts: list[str | bytes] = []
        size = 0
        while True:
            try:
                # What is already parsed first: frames that came with the 101, or with the last read.
                for event in self.ws.events():
                    if isinstance(event, Message):
                        parts.append(event.data)
                        size += _size(event.data)
                        if size > self.max_message:
                            await self._too_big(deadline)
                            return MESSAGE_TOO_BIG, "message too big"
                        if event.message_finished:
                            await self._deliver(parts, size, deadline)
                            parts, size = [], 0
                    elif isinstance(event, Ping):
                        await self._send_upstream(event.response(), deadline)
                    elif isinstance(event, CloseConnection):
                        if self.ws.state is ConnectionState.REMOTE_CLOSING:  # not the answer to our own close
                            await self._send_upstream(event.response(), deadline)
                        return wire_code(event.code), event.reason or ""
                chunk = await self.stream.receive(READ_SIZE)
            except ConnectionError:
                chunk = b""
            except ProtocolError as exc:
                log.warning("websocket: upstream broke the protocol: %s%s", exc, self.tag, extra=self.extra)
                return 1011, "upstream broke the WebSocket protocol"
            if not chunk:
                return 1011, "upstream connection lost"
            self.ws.receive_data(chunk)

    async def _deliver(self, parts: list[str | bytes], size: int, deadline: SendDeadline) -> None:
        if isinstance(parts[0], str):
            await self._to_client({"type": "websocket.send", "text": "".join(parts)}, deadline)  # type: ignore[arg-type]
        else:
            await self._to_client({"type": "websocket.send", "bytes": b"".join(parts)}, deadline)  # type: ignore[arg-type]
        if not self.client_gone:  # else it was not sent
            self.line.sent += size

    async def _to_client(self, message: AsgiMessage, deadline: SendDeadline) -> None:
        """Send to the client within the deadline; a client that has left takes nothing more."""
        if self.client_gone:
            return
        deadline.arm("client")
        try:
            await self.send(message)
        except OSError:  # uvicorn's ClientDisconnected: the client left while we were sending
            self.client_gone = True
            raise _Stuck(False, "the client left") from None
        finally:
            deadline.disarm()

    async def _send_upstream(self, event: Event, deadline: SendDeadline) -> None:
        try:
            data = self.ws.send(event)
        except ProtocolError as exc:  # wsproto refuses to send after a close: nothing left to say
            log.debug("websocket: not sent upstream: %r%s", exc, self.tag, extra=self.extra)
            return
        deadline.arm("upstream")
        try:
            await self.stream.send(data)
        except ConnectionError:
            pass  # the upstream is gone; the other direction reports it
        finally:
            deadline.disarm()


def _size(data: str | bytes) -> int:
    """Bytes of a message part; a text part counts as UTF-8, as it went over the wire."""
    return len(data.encode()) if isinstance(data, str) else len(data)
