"""The proxy's access line (`access_log = true`): its fields, and its text in Apache's combined layout.

`access_log_format = "combined"` gives the line nginx and Apache users read
and their tools parse, with the proxy's own fields appended (route, upstream,
time), as nginx's `log_format` with `$upstream_addr $request_time` does, then
the request ID (`-` with `request_id = false`):

    192.0.2.7 - - [27/Nov/2026:10:41:00 +0000] "GET /users/1 HTTP/1.1" 200 1234 "-" "curl/8.5" /users
    10.0.0.5:8001 3.2ms 9b2f6c1e0d8a4f37b5e2c9a1d6f0e3b7  (one line)

`"json"` gives the fields as a JSON object (`extra=` on the record, which the
worker's JSON formatter writes).

The size is the response body bytes the server took from the proxy (Apache's
`%b`: `-` for none), counted by `CountingSend` as they are sent: after any
rewrite, the proxy's own JSON error answers included, and only what was sent
when the client left in the middle. A WebSocket's line (status 101, or the
refusal's) counts the message bytes sent to the client as the size, and in
JSON also those received from it (`bytes_in`); the combined line keeps the
same columns for every request, so `bytes_in` is not in it.

Everything a client chose (path, Referer, User-Agent) is escaped: unprintable
bytes as `\\xNN`, and in the combined line `"` as `\\x22` (nginx's escaping), so
a client can neither start a log line of its own nor shift the quoted fields.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..asgi.types import Message, Scope, Send
from ..config.model import Address
from .protocol import log_target

access_log = logging.getLogger("qkhyper.access")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class CountingSend:
    """An ASGI `send` that counts the body bytes the server took (`*response.body` messages).

    Counted after the send returns: a chunk the client never took (it left, or
    send_timeout ran out) is not counted. The proxy wraps `send` in one only
    with `access_log = true`.
    """

    __slots__ = ("send", "sent")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.sent = 0

    async def __call__(self, message: Message) -> None:
        await self.send(message)
        body = message.get("body")
        if body:
            self.sent += len(body)


class SessionLine(CountingSend):
    """A proxied WebSocket's access line, filled in as the session goes, written when it ends.

    `status` is 101 once accepted, else the refusal's; `sent` counts a refusal's
    body (as `CountingSend`) and the message bytes sent to the client (the
    bridge adds them), `received` the message bytes the client sent.
    """

    __slots__ = ("received", "request_id", "status", "target")

    def __init__(self, send: Send) -> None:
        super().__init__(send)
        self.status = 0
        self.target: Address | None = None
        self.request_id: bytes | None = None
        self.received = 0

    def log(self, scope: Scope, route: str, elapsed_ms: float, access_log_format: str) -> None:
        fields = access_fields(scope, self.status, route, self.target, elapsed_ms, self.request_id, self.sent)
        fields["bytes_in"] = self.received
        log_access(scope, fields, access_log_format)


def access_fields(
    scope: Scope,
    status: int,
    route: str,
    target: Address | None,
    elapsed_ms: float,
    request_id: bytes | None = None,
    sent: int = 0,
) -> dict[str, Any]:
    """One request as the JSON access line's fields (ms rounded to 0.1, as in the text line).

    `request_id` is None when the proxy's request IDs are off (`request_id = false`);
    `sent` is the response body bytes sent to the client. A WebSocket scope has
    no method: its handshake is a GET.
    """
    return {
        "client": (scope.get("client") or ("-",))[0],
        "method": scope.get("method", "GET"),
        "path": log_target(scope),
        "status": status,
        "bytes": sent,
        "route": route,
        "upstream": f"{target[0]}:{target[1]}" if target else None,
        "duration_ms": round(elapsed_ms, 1),
        "request_id": None if request_id is None else request_id.decode("ascii"),
    }


def combined_line(scope: Scope, fields: dict[str, Any], now: float) -> str:
    """Apache's combined layout plus route, upstream, time and request ID; `now` is epoch seconds."""
    request = f"{fields['method']} {_quoted(fields['path'])} HTTP/{scope.get('http_version', '1.1')}"
    referer = _quoted(_escape(_header(scope, b"referer")))
    agent = _quoted(_escape(_header(scope, b"user-agent")))
    upstream = fields["upstream"] or "-"
    request_id = fields.get("request_id") or "-"
    size = fields["bytes"] or "-"
    return (
        f'{fields["client"]} - - [{_clf_time(now)}] "{request}" {fields["status"]} {size} "{referer}" "{agent}"'
        f" {fields['route']} {upstream} {fields['duration_ms']:.1f}ms {request_id}"
    )


def access_message(scope: Scope, fields: dict[str, Any], access_log_format: str, now: float) -> str:
    """The record's message: the combined line, or for "json" a short summary (the fields carry the rest)."""
    if access_log_format == "json":
        return f"{fields['method']} {fields['path']} {fields['status']}"
    return combined_line(scope, fields, now)


def log_access(scope: Scope, fields: dict[str, Any], access_log_format: str) -> None:
    """Write one access line (logger `qkhyper.access`): the message, and the fields as `extra=`."""
    access_log.info("%s", access_message(scope, fields, access_log_format, time.time()), extra=fields)


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b"-"


def _escape(value: bytes) -> str:
    return value.decode("latin-1").encode("unicode_escape").decode("ascii")


def _quoted(text: str) -> str:
    return text.replace('"', "\\x22")


def _clf_time(now: float) -> str:
    """`27/Nov/2026:10:41:00 +0000`, in UTC, with English month names whatever the locale."""
    t = time.gmtime(now)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
