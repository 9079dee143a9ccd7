"""Proxying a WebSocket: the ASGI side from the server, the upstream side with wsproto.

Subprotocols are negotiated end to end (the client's offer goes upstream, the
upstream's choice comes back in `websocket.accept`), and close codes and
reasons are relayed both ways (Hypercorn reports every client close to its
app as 1006, so a client's own code only survives with the uvicorn backend, on
the gateway and on the upstream). 1005, 1006 and 1015 describe a close without a
frame and may not be sent on the wire, so they become 1000 and 1011.
"""

from __future__ import annotations

import logging
import time

import anyio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from ..asgi.types import Receive, Scope, Send
from .backend import NetworkStream
from .connection import READ_SIZE, Target, UpstreamConnection, UpstreamError
from .forward import Route
from .protocol import HOP_BY_HOP, request_host, upstream_target

log = logging.getLogger("qkhyper.proxy")

_WIRE_CODES = {1005: 1000, 1006: 1011, 1015: 1011}
# Handshake headers wsproto writes itself, or that only concern this hop.
_OWN = HOP_BY_HOP | {
    b"host",
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"sec-websocket-extensions",
    b"sec-websocket-protocol",
    b"x-forwarded-prefix",
}


def wire_code(code: int | None) -> int:
    return _WIRE_CODES.get(code or 1005, code or 1000)


async def forward_websocket(scope: Scope, receive: Receive, send: Send, route: Route, timeout: float) -> None:
    await receive()  # websocket.connect
    try:
        stream, target = await _connect(route, timeout)
    except UpstreamError as exc:
        log.warning("websocket %s -> %s: %s", scope["path"], route.prefix or "fallback", exc)
        await send({"type": "websocket.close", "code": 1011})
        return
    try:
        ws = WSConnection(ConnectionType.CLIENT)
        try:
            accepted = await _handshake(scope, route, stream, ws, target, timeout)
        except (OSError, anyio.BrokenResourceError, TimeoutError) as exc:
            log.warning("websocket %s -> %s: handshake failed: %r", scope["path"], route.prefix or "fallback", exc)
            accepted = None
        if accepted is None:
            await send({"type": "websocket.close", "code": 1011})
            return
        await send({"type": "websocket.accept", "subprotocol": accepted.subprotocol})
        await _bridge(receive, send, stream, ws)
    finally:
        await stream.aclose()


async def _connect(route: Route, timeout: float) -> tuple[NetworkStream, Target]:
    error = UpstreamError("refused", "no upstream")
    for target in route.upstreams.order(time.monotonic()):
        try:
            conn = await UpstreamConnection.open(target, timeout)
        except UpstreamError as exc:
            route.upstreams.mark_down(target, time.monotonic())
            error = exc
            continue
        return conn.stream, target
    raise error


async def _handshake(
    scope: Scope, route: Route, stream: NetworkStream, ws: WSConnection, target: Target, timeout: float
) -> AcceptConnection | None:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    path = upstream_target(
        raw_path[len(route.prefix) :] if route.strip else raw_path, scope.get("query_string", b""), 0
    )
    headers = [(k, v) for k, v in scope["headers"] if k not in _OWN]
    client = scope.get("client")
    headers += [(b"x-forwarded-for", str(client[0] if client else "unknown").encode())]
    if route.strip and route.prefix:
        headers.append((b"x-forwarded-prefix", route.prefix.encode()))
    request = Request(
        host=request_host(scope).decode("latin-1"),
        target=path.decode("latin-1"),
        subprotocols=list(scope.get("subprotocols", [])),
        extra_headers=headers,
    )
    await stream.send(ws.send(request))
    with anyio.fail_after(timeout):
        while True:
            data = await stream.receive(READ_SIZE)
            ws.receive_data(data or None)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    return event
                if isinstance(event, RejectConnection):
                    log.warning("websocket %s: upstream refused with %d", scope["path"], event.status_code)
                    return None


async def _bridge(receive: Receive, send: Send, stream: NetworkStream, ws: WSConnection) -> None:
    async with anyio.create_task_group() as group:

        async def client_to_upstream() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    code = wire_code(message.get("code"))
                    await _send_upstream(stream, ws, CloseConnection(code=code, reason=message.get("reason") or ""))
                    break
                if message.get("text") is not None:
                    await _send_upstream(stream, ws, TextMessage(data=message["text"]))
                elif message.get("bytes") is not None:
                    await _send_upstream(stream, ws, BytesMessage(data=message["bytes"]))
            await anyio.sleep(1)  # give the upstream a moment to answer the close
            group.cancel_scope.cancel()

        async def upstream_to_client() -> None:
            code, reason = await _relay_upstream(send, stream, ws)
            await send({"type": "websocket.close", "code": code, "reason": reason})
            group.cancel_scope.cancel()

        group.start_soon(client_to_upstream)
        group.start_soon(upstream_to_client)


async def _relay_upstream(send: Send, stream: NetworkStream, ws: WSConnection) -> tuple[int, str]:
    """Forward upstream messages until it closes; return the close code and reason for the client."""
    text: list[str] = []
    data: list[bytes] = []
    while True:
        try:
            chunk = await stream.receive(READ_SIZE)
        except (anyio.BrokenResourceError, OSError):
            chunk = b""
        if not chunk:
            return 1011, "upstream connection lost"
        ws.receive_data(chunk)
        for event in ws.events():
            if isinstance(event, TextMessage):
                text.append(event.data)
                if event.message_finished:
                    await send({"type": "websocket.send", "text": "".join(text)})
                    text.clear()
            elif isinstance(event, BytesMessage):
                data.append(bytes(event.data))
                if event.message_finished:
                    await send({"type": "websocket.send", "bytes": b"".join(data)})
                    data.clear()
            elif isinstance(event, Ping):
                await _send_upstream(stream, ws, event.response())
            elif isinstance(event, CloseConnection):
                if ws.state is ConnectionState.REMOTE_CLOSING:  # not the answer to our own close
                    await _send_upstream(stream, ws, event.response())
                return wire_code(event.code), event.reason or ""


async def _send_upstream(stream: NetworkStream, ws: WSConnection, event: Event) -> None:
    try:
        await stream.send(ws.send(event))
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the upstream is gone; the other direction reports it
    except Exception as exc:  # wsproto refuses to send after a close: nothing left to say
        log.debug("websocket: not sent upstream: %r", exc)
