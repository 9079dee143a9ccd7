"""The edge checks every server qkhyper runs makes in plain ASGI, the same on both backends.

Outermost around every app (user apps and qkhyper's own gateway and static
server), since they need no server internals:

- **More than `max_headers` header lines** is 431 (Hypercorn has no such cap,
  and uvicorn none either).
- **Content-Length with Transfer-Encoding** is 400 with `Connection: close`
  (RFC 9112 §6.1: the server MUST close the connection after responding).
  The servers frame such a body as chunked, so whatever follows the chunked
  end would otherwise run as the next request. The parsers as qkhyper sets
  them up refuse it first (`backends.heads.LimitedConnection`, llhttp), so
  this is the backstop for a server whose patch did not apply. h11 (Hypercorn,
  uvicorn's h11) and uvicorn's httptools protocol close the connection after a
  response carrying `Connection: close`, before reading another request.

Header *size*, the header timeout and the Host checks need the servers' own
parsers; they are in `qkhyper.backends`.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..config.model import EdgeLimits
from .responses import send_json
from .types import ASGIApp, Receive, Scope, Send

_CLOSE = [(b"connection", b"close")]


def refusal(headers: Iterable[tuple[bytes, bytes]], max_headers: int) -> tuple[int, str] | None:
    """The status and reason a request with these headers gets, or None when it may pass."""
    count = 0
    length = chunked = False
    for name, _ in headers:
        count += 1
        if len(name) in (14, 17):  # cheap pre-check: most headers are neither
            lowered = name.lower()
            length = length or lowered == b"content-length"
            chunked = chunked or lowered == b"transfer-encoding"
    if count > max_headers:
        return 431, f"more than {max_headers} header lines"
    if length and chunked:
        return 400, "both Content-Length and Transfer-Encoding"
    return None


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, limits: EdgeLimits) -> None:
        self.app = app
        self.max_headers = limits.max_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refused = refusal(scope["headers"], self.max_headers)
            if refused is not None:
                await _refuse(scope, send, *refused)
                return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, status: int, detail: str) -> None:
    error = "request header fields too large" if status == 431 else "bad request"
    if scope["type"] == "http":
        await send_json(send, status, {"error": error, "detail": detail}, _CLOSE)
    elif "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": _CLOSE})
        await send({"type": "websocket.http.response.body", "body": detail.encode()})
    else:
        await send({"type": "websocket.close", "code": 1008})  # the server answers 403
