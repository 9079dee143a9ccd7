"""Sans-io proxy rules: which headers cross the proxy, and how they change.

No sockets and no awaits here, so every rule is tested with plain values.
Framing is always the proxy's own: the client's Content-Length and
Transfer-Encoding are never copied (RFC 9112 §6.1: a request with both is an
attack, RELIABILITY §2), and hop-by-hop headers never cross in either
direction.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",  # re-derived by the proxy, never copied
    }
)
_FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-prefix"})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class BadRequest(Exception):
    """The client's request cannot be forwarded; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What the proxy sends upstream, and how the body is framed."""

    method: bytes
    target: bytes
    headers: Headers
    length: int | None  # Content-Length of the body; None with chunked; 0 without a body
    chunked: bool


def request_head(scope: MutableMapping[str, Any], target: bytes, prefix: str, host: bytes) -> RequestHead:
    """The upstream request for an ASGI `scope`, with `target` as its path and query.

    Raises:
        BadRequest: both Content-Length and Transfer-Encoding, or a bad Content-Length.
    """
    headers: Headers = []
    length: bytes | None = None
    chunked = False
    forwarded_for: list[bytes] = []
    client_host: bytes | None = None
    named: set[bytes] = set()
    for name, value in scope["headers"]:
        if name == b"content-length":
            if length is not None and length != value.strip():
                raise BadRequest("conflicting Content-Length headers")
            length = value.strip()
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"x-forwarded-for":
            forwarded_for.append(value)
        elif name == b"connection":
            named |= {t.strip().lower() for t in value.split(b",")}
        elif name not in HOP_BY_HOP and name not in _FORWARDED:
            if name == b"host":
                client_host = value
            headers.append((name, value))
    if named - HOP_BY_HOP:  # headers the client declared hop-by-hop (RFC 9110 §7.6.1)
        headers = [(k, v) for k, v in headers if k not in named or k == b"host"]
    if chunked and length is not None:
        raise BadRequest("both Content-Length and Transfer-Encoding")
    if length is not None and not (length.isdigit() and len(length) < 19):
        raise BadRequest("invalid Content-Length")
    client = scope.get("client")
    forwarded_for.append(str(client[0]).encode() if client else b"unknown")
    if client_host is None:
        headers.append((b"host", host))
    headers.append((b"x-forwarded-for", b", ".join(forwarded_for)))
    headers.append((b"x-forwarded-proto", b"https" if scope.get("scheme") in ("https", "wss") else b"http"))
    headers.append((b"x-forwarded-host", client_host or host))
    if prefix:
        headers.append((b"x-forwarded-prefix", prefix.encode()))
    size: int | None = 0
    if length is not None:
        size = int(length)
        headers.append((b"content-length", str(size).encode()))
    elif chunked:
        size = None
        headers.append((b"transfer-encoding", b"chunked"))
    return RequestHead(scope["method"].encode(), target, headers, size, chunked)


# Like nginx, the proxy's own server writes these; the upstream's would be duplicates.
_SERVER_OWN = frozenset({b"date", b"server"})
_RESPONSE_DROPPED = (HOP_BY_HOP - {b"content-length"}) | _SERVER_OWN


@dataclass(slots=True)
class ResponseHead:
    """Upstream response headers as the client gets them, and what the relay needs to know."""

    headers: Headers
    event_stream: bool = False
    length: int | None = None  # Content-Length, if the upstream sent a valid one
    location: int = -1  # index of the Location header in `headers`, -1 if none
    conflicting: bool = False  # Content-Length and Transfer-Encoding both: a smuggling risk, refused


def response_headers(raw: Iterable[tuple[bytes, bytes]]) -> ResponseHead:
    """Drop hop-by-hop headers (Content-Length is kept, so the server frames by length)."""
    head = ResponseHead([])
    named: set[bytes] = set()
    accel = chunked = False
    for name, value in raw:
        if name in _RESPONSE_DROPPED:
            if name == b"connection":
                named |= {t.strip().lower() for t in value.split(b",")}
            chunked = chunked or name == b"transfer-encoding"
            continue
        if name == b"content-length":
            head.length = int(value) if value.isdigit() else None
        elif name == b"content-type":
            head.event_stream = value.startswith(b"text/event-stream")
        elif name == b"location":
            head.location = len(head.headers)
        elif name == b"x-accel-buffering":
            accel = True
        head.headers.append((name, value))
    if named - _RESPONSE_DROPPED:
        head.headers = [(k, v) for k, v in head.headers if k not in named]
        head.location = next((i for i, (k, _) in enumerate(head.headers) if k == b"location"), -1)
    if head.event_stream and not accel:
        head.headers.append((b"x-accel-buffering", b"no"))
    head.conflicting = chunked and head.length is not None
    return head


def rewrite_location(location: bytes, upstream: tuple[str, int], public: bytes, prefix: str) -> bytes:
    """Point a `Location` that names the upstream itself at the proxy's public URL.

    `public` is `scheme://host` as the client used it. A Location for any other
    authority, or a relative one, is left alone: upstreams served by qkhyper
    already build prefixed URLs from X-Forwarded-Prefix and the kept Host.
    """
    try:
        parts = urlsplit(location.decode("latin-1"))
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return location
    if not parts.scheme or (parts.hostname, port) != upstream:
        return location
    path = parts.path or "/"
    rest = path + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    return public + prefix.encode() + rest.encode("latin-1")


def upstream_target(raw_path: bytes, query: bytes, strip: int) -> bytes:
    """Path and query for the upstream: the raw bytes after the prefix, untouched."""
    path = raw_path[strip:] or b"/"
    if not path.startswith(b"/"):
        path = b"/" + path
    return path + b"?" + query if query else path


def request_host(scope: MutableMapping[str, Any]) -> bytes:
    """The Host the client asked for (kept upstream, so apps build public URLs)."""
    for name, value in scope["headers"]:
        if name == b"host":
            return bytes(value)
    server = scope.get("server") or ("localhost", None)
    return f"{server[0]}:{server[1]}".encode() if server[1] else str(server[0]).encode()


def public_origin(scope: MutableMapping[str, Any]) -> bytes:
    """`scheme://host` as the client used it, for rewriting Locations."""
    scheme = str(scope.get("scheme", "http"))
    return {"ws": "http", "wss": "https"}.get(scheme, scheme).encode() + b"://" + request_host(scope)
