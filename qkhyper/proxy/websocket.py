"""Proxying a WebSocket: the ASGI side from the server, the upstream side with wsproto.

- The handshake carries the same forwarding headers as plain HTTP
  (`protocol.websocket_headers`), so a client cannot spoof X-Forwarded-*.
- Subprotocols are negotiated end to end (the client's offer goes upstream,
  the upstream's choice comes back in `websocket.accept`).
- A handshake that fails is answered as HTTP, through the ASGI
  "websocket.http.response" extension both servers offer: the upstream's own
  refusal (status and body) is relayed, a dead upstream is 502, a malformed
  handshake (a wrong Sec-WebSocket-Accept) 502, a silent one 504.
- With request IDs on, the handshake upstream carries the request's
  X-Request-ID and so does the client's 101 (`websocket.accept` headers) or
  its refusal; the failure log lines name it.
- Frames the upstream sent in the same packet as its 101 are delivered first:
  wsproto has already parsed them when the handshake completes.
- Messages over `ws_max_message_size`, either way, close both sides with 1009.
- Close codes and reasons are relayed both ways (Hypercorn reports every client
  close to its app as 1006, so a client's own code only survives with the
  uvicorn backend). 1005, 1006 and 1015 describe a close without a frame and
  may not be sent on the wire, so they become 1000 and 1011.
"""

from __future__ import annotations

import logging
import time

import anyio
import h11
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    RejectConnection,
    RejectData,
    Request,
)
from wsproto.utilities import ProtocolError

from ..asgi.types import Message as AsgiMessage
from ..asgi.types import Receive, Scope, Send
from ..config.model import Address
from ..metrics.recorder import ProxyMetrics
from .accesslog import SessionLine
from .backend import NetworkStream
from .bridge import Bridge
from .connection import READ_SIZE, UpstreamConnection
from .errors import BadRequest, MalformedResponse, ProxyError, ResponseHeadTimeout, UpstreamClosed, outcome
from .forward import Route, answer_error
from .pool import Clock, Pool
from .protocol import (
    REQUEST_ID,
    choose_request_id,
    log_extra,
    log_request_id,
    log_target,
    raw_path,
    response_headers,
    upstream_target,
    websocket_headers,
)

log = logging.getLogger("qkhyper.proxy")


class WebSocketProxy:
    """Forwards WebSocket sessions of one route set: connect, handshake, then the bridge."""

    def __init__(
        self,
        pool: Pool,
        *,
        read_timeout: float,
        send_timeout: float,
        max_message: int,
        request_id: bool,
        access_log: bool = False,
        access_log_format: str = "combined",
        clock: Clock = time.monotonic,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.pool = pool
        self.access_log = access_log
        self.access_log_format = access_log_format
        self.metrics = metrics
        self.read_timeout = read_timeout
        self.send_timeout = send_timeout
        self.max_message = max_message
        self.request_id = request_id  # the `request_id` setting: keep or make one, send it, log it
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send, route: Route, matched: int) -> None:
        """Proxy one session; with access_log, its line when it ends (`send` counted only then)."""
        line = SessionLine(send)
        started = self.clock()
        try:
            await self._session(scope, receive, line if self.access_log else send, route, matched, line)
        finally:
            if self.access_log:
                line.log(scope, route.label, (self.clock() - started) * 1000, self.access_log_format)

    async def _session(
        self, scope: Scope, receive: Receive, send: Send, route: Route, matched: int, line: SessionLine
    ) -> None:
        await receive()  # websocket.connect
        raw = raw_path(scope)
        path = raw[matched:] if route.strip else raw
        path = upstream_target(route.base + path if route.base else path, scope.get("query_string", b""))
        request_id = line.request_id = choose_request_id(scope["headers"]) if self.request_id else None
        tag, extra = log_request_id(request_id), log_extra(request_id)
        try:
            host, headers = websocket_headers(scope, route.prefix if route.strip else "", request_id)
            conn = await self._connect(route, request_id)
        except ProxyError as exc:
            log.warning("websocket %s -> %s: %s%s", log_target(scope), route.label, exc, tag, extra=extra)
            line.status = await deny(scope, send, exc, route, request_id)
            return
        stream, line.target = conn.stream, conn.target
        if route.hosts is not None:  # rewrite_host: the target's own name
            host = route.hosts[conn.target]
        try:
            ws = WSConnection(ConnectionType.CLIENT)
            request = Request(
                host=host.decode("latin-1"),
                target=path.decode("latin-1"),
                subprotocols=list(scope.get("subprotocols", [])),
                extra_headers=headers,
            )
            try:
                await stream.send(_handshake_bytes(ws, request))
                answer = await self._handshake(stream, ws)
            except ProxyError as exc:
                log.warning("websocket %s -> %s: %s%s", log_target(scope), route.label, exc, tag, extra=extra)
                line.status = await deny(scope, send, exc, route, request_id)
                return
            if isinstance(answer, RejectConnection):
                status = line.status = answer.status_code
                where = log_target(scope)
                log.info("websocket %s -> %s: upstream refused with %d%s", where, route.label, status, tag, extra=extra)
                await self._relay_refusal(scope, send, stream, ws, answer, request_id)
                return
            accept: AsgiMessage = {"type": "websocket.accept", "subprotocol": answer.subprotocol}
            if request_id is not None:
                accept["headers"] = [(REQUEST_ID, request_id)]  # the server adds them to its 101 (ASGI spec 2.1)
            await send(accept)
            line.status = 101
            assert ws.connection is not None  # accepted: the handshake made the frame-level connection
            bridge = Bridge(receive, send, stream, ws.connection, self.max_message, self.send_timeout, line)
            del ws, request, answer  # the handshake is done with: its h11 state need not live as long as the session
            await self._bridge(bridge)
        finally:
            await conn.aclose()  # shielded; the pool counts it closed

    async def _bridge(self, bridge: Bridge) -> None:
        if self.metrics is None:
            await bridge.run()
            return
        self.metrics.stream("websocket", 1)
        try:
            await bridge.run()
        finally:
            self.metrics.stream("websocket", -1)

    async def _connect(self, route: Route, request_id: bytes | None) -> UpstreamConnection:
        async def attempt(target: Address) -> UpstreamConnection:
            return await self.pool.connect(target, route.tls)

        return await route.upstreams.first(attempt, self.clock(), route.label, request_id)

    async def _handshake(self, stream: NetworkStream, ws: WSConnection) -> AcceptConnection | RejectConnection:
        """The upstream's answer to the handshake; frames after it stay buffered in `ws`.

        Raises:
            ResponseHeadTimeout, UpstreamClosed, MalformedResponse
        """
        with anyio.move_on_after(self.read_timeout):
            while True:
                try:
                    data = await stream.receive(READ_SIZE)
                except ConnectionError as exc:
                    raise UpstreamClosed(f"upstream connection lost during the handshake: {exc!r}") from None
                if not data:
                    raise UpstreamClosed("upstream closed the connection during the handshake", before_response=True)
                try:
                    ws.receive_data(data)
                    for event in ws.events():
                        if isinstance(event, (AcceptConnection, RejectConnection)):
                            return event
                except ProtocolError as exc:
                    raise MalformedResponse(f"malformed WebSocket handshake from upstream: {exc}") from None
        raise ResponseHeadTimeout(f"no handshake answer within {self.read_timeout:g} s")

    async def _relay_refusal(
        self,
        scope: Scope,
        send: Send,
        stream: NetworkStream,
        ws: WSConnection,
        answer: RejectConnection,
        request_id: bytes | None,
    ) -> None:
        """Pass the upstream's own HTTP answer on (a 403, a 404), body included."""
        if not _can_deny(scope):
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = response_headers(answer.headers, request_id).headers
        await send({"type": "websocket.http.response.start", "status": answer.status_code, "headers": headers})
        finished = not answer.has_body
        with anyio.move_on_after(self.read_timeout):
            while not finished:
                events = list(ws.events())
                for event in events:
                    if isinstance(event, RejectData):
                        finished = event.body_finished
                        await send({"type": "websocket.http.response.body", "body": event.data, "more_body": True})
                if not finished and not events:
                    try:
                        data = await stream.receive(READ_SIZE)
                    except ConnectionError:
                        break
                    ws.receive_data(data or None)
                    finished = not data
        if finished:  # else the answer ends short, and the server closes the connection
            await send({"type": "websocket.http.response.body", "body": b""})


def _handshake_bytes(ws: WSConnection, request: Request) -> bytes:
    """The handshake request; a Host wsproto cannot write (IDNA refuses `a..b`) is a bad request.

    Raises:
        BadRequest
    """
    try:
        return ws.send(request)
    except (UnicodeError, ProtocolError, h11.LocalProtocolError) as exc:
        raise BadRequest(f"cannot forward this WebSocket handshake: {exc}") from None


def _can_deny(scope: Scope) -> bool:
    return "websocket.http.response" in (scope.get("extensions") or {})


async def deny(scope: Scope, send: Send, exc: ProxyError, route: Route, request_id: bytes | None) -> int:
    """Refuse a WebSocket as the HTTP error the same failure gets on a plain request; the status the client gets."""
    if not _can_deny(scope):  # without the extension a close is all there is: 1011 unless it was the client's fault
        await send({"type": "websocket.close", "code": 1008 if outcome(exc).status == 400 else 1011})
        return 403  # what the server answers a close before the accept
    await answer_error(scope, send, exc, route, request_id)
    return outcome(exc).status
