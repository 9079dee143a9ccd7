"""Sans-io proxy rules: which headers cross the proxy, and how they change.

No sockets and no awaits here, so every rule is tested with plain values.
Framing is always the proxy's own: the client's Content-Length and
Transfer-Encoding are never copied (RFC 9112 §6.1: a request with both is an
attack, RELIABILITY §2), and hop-by-hop headers never cross in either
direction.

Request IDs (README "What crosses the gateway"): the client's X-Request-ID is
kept only when it is one short value of plain characters, since it ends up in
log lines, response headers and JSON bodies; otherwise the proxy makes one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlsplit

import h11

from .errors import BadRequest

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
# Set by the proxy, never taken from the client (For is appended to, below). `Forwarded`
# (RFC 7239), X-Real-IP and X-Forwarded-Port say the same things in other words.
_FORWARDED = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
        b"x-forwarded-port",
        b"x-real-ip",
        b"forwarded",
    }
)
# What wsproto writes itself in a WebSocket handshake (Host, key, version, offers).
WEBSOCKET_OWN = frozenset(
    {b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions", b"sec-websocket-protocol"}
)
# A request target that can be written (RFC 9112 §3.2): visible ASCII, h11's own rule.
_TARGET = re.compile(rb"[\x21-\x7e]+")
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})

REQUEST_ID = b"x-request-id"
# nginx's $request_id is 32 hex digits and a UUID 36 characters; 128 leaves room for the
# prefixed or base64 IDs a proxy in front may set, and no more for a client to fill log lines with.
REQUEST_ID_MAX = 128
# Hex, UUIDs, base64 and `svc:host/n` styles, and nothing a log line, a header or a JSON
# string would have to escape: no space, quote, comma, `;`, `%`, backslash or control byte.
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,%d}" % REQUEST_ID_MAX)
# With request IDs on, the client's X-Request-ID is not copied: the chosen one goes instead.
_HTTP_DROPPED_WITH_ID = HOP_BY_HOP | {REQUEST_ID}
_WEBSOCKET_DROPPED = HOP_BY_HOP | WEBSOCKET_OWN
_WEBSOCKET_DROPPED_WITH_ID = _WEBSOCKET_DROPPED | {REQUEST_ID}


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What the proxy sends upstream, and how the body is framed."""

    method: bytes
    target: bytes
    headers: Headers  # Host first, then the client's end-to-end headers, then X-Forwarded-*
    length: int | None  # Content-Length of the body; None with chunked; 0 without a body
    chunked: bool
    request_id: bytes | None = None  # the ID it carries, for the log lines about it (None: IDs off)

    @property
    def idempotent(self) -> bool:
        return self.method in IDEMPOTENT

    def check_target(self) -> None:
        """Refuse a target that cannot go on the request line: visible ASCII only, as h11 checks it.

        Targets come from the ASGI server's parser or an upstream's Location
        (`--fastapi-redirect`), never as raw client bytes; this is the one check
        both codecs rely on (`codec.py`).

        Raises:
            BadRequest: a space, a control byte or a non-ASCII byte in the target.
        """
        if _TARGET.fullmatch(self.target) is None:
            raise BadRequest("cannot forward this request: Illegal target characters")  # h11's words

    def wire(self) -> bytes:
        """The request line and headers as bytes, joined as they are (the headers are checked: see `event`)."""
        parts = [self.method, b" ", self.target, b" HTTP/1.1\r\n"]
        for name, value in self.headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def event(self) -> h11.Request:
        """The h11 event to send.

        `_parsed`: the headers were parsed and validated by the ASGI server (or
        are the proxy's own), so h11's per-header regex checks would only
        repeat work on the hot path. h11 still checks the target.

        Raises:
            BadRequest: a target h11 will not send (never one the server parsed).
        """
        try:
            return h11.Request(method=self.method, target=self.target, headers=self.headers, _parsed=True)
        except h11.LocalProtocolError as exc:
            raise BadRequest(f"cannot forward this request: {exc}") from None


def accepted_request_id(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The client's X-Request-ID if it may be used as the request's ID, else None.

    Only one header, of 1 to REQUEST_ID_MAX safe characters: the value is the
    client's to choose and goes into logs and response headers, so anything
    else is replaced, never escaped or cut. Two headers (or a comma-joined
    list) are replaced too: which one the client meant is a guess, and hops
    that guessed differently would log different IDs for one request.
    """
    found: bytes | None = None
    for name, value in headers:
        if name == REQUEST_ID:
            if found is not None:
                return None
            found = value
    if found is None or _SAFE_REQUEST_ID.fullmatch(found) is None:
        return None
    return bytes(found)


def new_request_id() -> bytes:
    """32 random hex digits, as nginx's $request_id: unique across workers without coordination."""
    return os.urandom(16).hex().encode()


def choose_request_id(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The request's ID: the client's, if `accepted_request_id` keeps it, else a new one."""
    return accepted_request_id(headers) or new_request_id()


def request_head(
    scope: MutableMapping[str, Any],
    target: bytes,
    prefix: str,
    request_id: bytes | None = None,
    forwarded_host: bool = True,
) -> RequestHead:
    """The upstream request for an HTTP `scope`, with `target` as its path and query.

    `request_id` (None: request IDs are off) replaces the client's X-Request-ID;
    `forwarded_host` False leaves X-Forwarded-Host out (the client's own is dropped either way).

    Raises:
        BadRequest: both Content-Length and Transfer-Encoding, a bad
            Content-Length, or a duplicate or (on HTTP/1.1) missing Host.
    """
    client = _ClientHead(scope, HOP_BY_HOP if request_id is None else _HTTP_DROPPED_WITH_ID)
    length = client.length
    if client.chunked and length is not None:
        raise BadRequest("both Content-Length and Transfer-Encoding")
    if length is not None and not (length.isdigit() and len(length) < 19):
        raise BadRequest("invalid Content-Length")
    headers = [(b"host", client.host), *client.headers, *client.forwarded(scope, prefix, request_id, forwarded_host)]
    size: int | None = 0
    if length is not None:
        size = int(length)
        headers.append((b"content-length", str(size).encode()))
    elif client.chunked:
        size = None
        headers.append((b"transfer-encoding", b"chunked"))
    return RequestHead(scope["method"].encode(), target, headers, size, client.chunked, request_id)


def websocket_headers(
    scope: MutableMapping[str, Any], prefix: str, request_id: bytes | None = None
) -> tuple[bytes, Headers]:
    """Host and the extra handshake headers for a WebSocket `scope`: the same policy as HTTP.

    Raises:
        BadRequest: a duplicate or missing Host.
    """
    dropped = _WEBSOCKET_DROPPED if request_id is None else _WEBSOCKET_DROPPED_WITH_ID
    client = _ClientHead(scope, dropped)
    return client.host, [*client.headers, *client.forwarded(scope, prefix, request_id)]


class _ClientHead:
    """The client's headers in one pass: Host, framing, X-Forwarded-For, and what may go on."""

    __slots__ = ("chain", "chunked", "headers", "host", "length")

    def __init__(self, scope: MutableMapping[str, Any], dropped: frozenset[bytes]) -> None:
        self.headers: Headers = []
        self.chain: list[bytes] = []  # X-Forwarded-For values, in order
        self.length: bytes | None = None
        self.chunked = False
        hosts: list[bytes] = []
        named: set[bytes] = set()
        for name, value in scope["headers"]:
            if name == b"host":
                hosts.append(value)
            elif name == b"content-length":
                if self.length is not None and self.length != value.strip():
                    raise BadRequest("conflicting Content-Length headers")
                self.length = value.strip()
            elif name == b"transfer-encoding":
                if self.chunked or value.strip().lower() != b"chunked":  # h11 answers these 501
                    raise BadRequest("unsupported Transfer-Encoding")
                self.chunked = True
            elif name == b"x-forwarded-for":
                self.chain.append(value)
            elif name == b"connection":
                named |= {t.strip().lower() for t in value.split(b",")}
            elif name not in dropped and name not in _FORWARDED and b"_" not in name:
                # Underscores: WSGI and CGI upstreams read X_Forwarded_Proto as X-Forwarded-Proto,
                # so such a header could spoof one the proxy sets (nginx drops them too).
                self.headers.append((name, value))
        if named - dropped:  # headers the client declared hop-by-hop (RFC 9110 §7.6.1)
            self.headers = [(k, v) for k, v in self.headers if k not in named]
        self.host = _one_host(scope, hosts)

    def forwarded(
        self, scope: MutableMapping[str, Any], prefix: str, request_id: bytes | None, host: bool = True
    ) -> Headers:
        """X-Forwarded-*: For appended to, Proto, Host and Prefix set (the client's own are dropped); X-Request-ID."""
        client = scope.get("client")
        chain = [*self.chain, str(client[0]).encode() if client else b"unknown"]
        headers = [
            (b"x-forwarded-for", b", ".join(chain)),
            (b"x-forwarded-proto", b"https" if scope.get("scheme") in ("https", "wss") else b"http"),
        ]
        if host:
            headers.append((b"x-forwarded-host", self.host))
        if prefix:
            headers.append((b"x-forwarded-prefix", prefix.encode()))
        if request_id is not None:
            headers.append((REQUEST_ID, request_id))
        return headers


def _one_host(scope: MutableMapping[str, Any], hosts: list[bytes]) -> bytes:
    """RFC 9112 §3.2: exactly one Host on HTTP/1.1; HTTP/1.0 may go without (then: the server's address)."""
    if len(hosts) > 1:
        raise BadRequest("more than one Host header")
    if hosts:
        return bytes(hosts[0])
    if scope.get("http_version", "1.1") not in ("1.0", "0.9"):
        raise BadRequest("no Host header")
    return request_host(scope)


def refusal(scope: MutableMapping[str, Any], raw: bytes, depth: int) -> str | None:
    """Why a request may not be forwarded at all, or None (SPEC §4: no open proxy, no path confusion).

    CONNECT, `*` and absolute-form targets (a path not starting with `/`) are
    for proxies the client chose, never this one; `.`, `..` or an encoded slash
    or backslash in the first `depth` segments (those a prefix is matched on)
    would make the proxy and the upstream disagree about the route.
    """
    if scope.get("method") == "CONNECT" or not raw.startswith(b"/"):
        return "target not allowed"
    if b"%" not in raw and b"." not in raw and b"\\" not in raw:
        return None  # the common case, without splitting
    for segment in raw.split(b"/", depth + 1)[1 : depth + 1]:
        lowered = segment.lower()
        if b"%2f" in lowered or b"%5c" in lowered or b"\\" in segment or unquote_to_bytes(segment) in (b".", b".."):
            return "path not allowed"
    return None


def match_prefix(raw_path: bytes, prefix: bytes) -> int | None:
    """How many bytes of `raw_path` spell `prefix` on whole segments, or None.

    Segments are compared percent-decoded (`/%61pi/x` is under `/api`, as the
    upstream will read it), and the raw bytes after the match are what gets
    forwarded, untouched.
    """
    size = len(prefix)
    if raw_path.startswith(prefix) and (len(raw_path) == size or raw_path[size] == 0x2F):  # "/"
        return size
    if b"%" not in raw_path:
        return None
    end = 0
    for wanted in prefix.split(b"/")[1:]:
        if end >= len(raw_path) or raw_path[end] != 0x2F:
            return None
        stop = raw_path.find(b"/", end + 1)
        stop = len(raw_path) if stop < 0 else stop
        if unquote_to_bytes(raw_path[end + 1 : stop]) != wanted:
            return None
        end = stop
    return end


# Like nginx, the proxy's own server writes these; the upstream's would be duplicates.
_SERVER_OWN = frozenset({b"date", b"server"})
_RESPONSE_DROPPED = (HOP_BY_HOP - {b"content-length"}) | _SERVER_OWN
# With request IDs on, the client gets the ID the proxy logged and sent upstream, once, never the upstream's.
_RESPONSE_DROPPED_WITH_ID = _RESPONSE_DROPPED | {REQUEST_ID}


@dataclass(slots=True)
class ResponseHead:
    """Upstream response headers as the client gets them, and what the relay needs to know."""

    headers: Headers
    event_stream: bool = False
    length: int | None = None  # Content-Length, if the upstream sent a valid one
    location: int = -1  # index of the Location header in `headers`, -1 if none
    conflicting: bool = False  # Content-Length and Transfer-Encoding both: a smuggling risk, refused


def response_headers(raw: Iterable[tuple[bytes, bytes]], request_id: bytes | None = None) -> ResponseHead:
    """Drop hop-by-hop headers (Content-Length is kept, so the server frames by length).

    `request_id` (None: request IDs are off) replaces the upstream's X-Request-ID.
    """
    head = ResponseHead([])
    named: set[bytes] = set()
    accel = chunked = False
    dropped = _RESPONSE_DROPPED if request_id is None else _RESPONSE_DROPPED_WITH_ID
    for name, value in raw:
        if name in dropped:
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
    if named - dropped:
        head.headers = [(k, v) for k, v in head.headers if k not in named]
        head.location = next((i for i, (k, _) in enumerate(head.headers) if k == b"location"), -1)
    if head.event_stream and not accel:
        head.headers.append((b"x-accel-buffering", b"no"))
    if request_id is not None:
        head.headers.append((REQUEST_ID, request_id))
    head.conflicting = chunked and head.length is not None
    return head


def rewrite_location(
    location: bytes,
    upstream: tuple[str, int],
    public: bytes,
    prefix: str,
    prefixes: Sequence[str] = (),
    base: bytes = b"",
) -> bytes:
    """Point an upstream's `Location` back through the gateway, under the route's prefix.

    An upstream behind a prefix often does not know it: a plain uvicorn app
    ignores `X-Forwarded-Prefix`, so FastAPI's trailing-slash redirect for
    `/users/items` says `Location: http://gateway/items/`, which 404s. So a
    Location that points at the upstream itself, at the host the client used
    (`public` is `scheme://host` as the client sent it), or is a path-absolute
    reference (`/items/`) gets the route's `prefix` in front of its path, and
    the client's scheme and host. A path that already starts with a route's
    prefix (any of `prefixes`, the route's own included, whole segments only)
    is left as it is: the app knew. A Location for any other authority, or a
    path-relative one (`items/`, resolved by the client under the prefix
    already), is left alone, as is one that does not parse. The route's
    `base` path (an upstream URL's `/v1`), when the path starts with it, is
    taken off first: it is the upstream's, not the client's.
    """
    try:
        parts = urlsplit(location.decode("latin-1"))
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return location
    if parts.scheme or parts.netloc:
        public_netloc = urlsplit(public.decode("latin-1")).netloc.lower()
        if (parts.hostname, port) != upstream and parts.netloc.lower() != public_netloc:
            return location  # another site
        origin = public
    elif location.startswith(b"/") and not location.startswith(b"//"):
        origin = b""  # path-absolute: stays relative, under the prefix
    else:
        return location  # path-relative: the client resolves it under the prefix already
    path = parts.path or "/"
    if base:
        size = len(base)
        written = path.encode("latin-1")
        if written.startswith(base) and (len(written) == size or written[size] == 0x2F):
            path = path[size:] or "/"
    if not any(_under(path, p) for p in (prefix, *prefixes) if p):
        path = prefix + path
    rest = path + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    return origin + rest.encode("latin-1")


def _under(path: str, prefix: str) -> bool:
    """`/users/x` and `/users` are under `/users`; `/usersx` is not."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def slashed(path: bytes) -> bytes:
    """`--add-slashes`: the path with `/` appended, unless it ends in one or its last segment has a dot.

    The older gateway appended a slash to every forwarded path, so FastAPI
    routes declared as `/items/` answered `/items` without a redirect. The
    path here is without its query (the slash goes before `?`, never into
    it), and `/app.js` or `/v1.2` are left alone: a dot marks a file, or a
    version, not a collection.
    """
    if path.endswith(b"/"):
        return path
    last = path.rpartition(b"/")[2]
    return path if b"." in last else path + b"/"


def upstream_target(path: bytes, query: bytes) -> bytes:
    """Path and query for the upstream: the raw bytes after the prefix, untouched."""
    path = path or b"/"
    if not path.startswith(b"/"):
        path = b"/" + path
    return path + b"?" + query if query else path


def raw_path(scope: MutableMapping[str, Any]) -> bytes:
    """The path as the client sent it; ASGI lets a server leave `raw_path` out, then it is re-quoted."""
    raw: bytes | None = scope.get("raw_path")
    return raw or quote(scope["path"]).encode("ascii")


def log_target(scope: MutableMapping[str, Any]) -> str:
    """The path for a log line: as the client sent it, with anything unprintable escaped.

    The decoded `path` would turn `%0a` into a line break, letting a client
    write lines of its own into the log.
    """
    return raw_path(scope).decode("latin-1").encode("unicode_escape").decode("ascii")


def log_request_id(request_id: bytes | None) -> str:
    """The end of a failure's log line: ` request_id=...`, or nothing with request IDs off.

    Safe to log as it is: `accepted_request_id` let only plain characters through.
    """
    return "" if request_id is None else " request_id=" + request_id.decode("ascii")


def log_extra(request_id: bytes | None) -> dict[str, str] | None:
    """`extra=` of a log record about a request: the `request_id` field of its JSON line (None: IDs off).

    Every line about a request ends with `log_request_id` *and* passes this, so
    the ID is in the text line and a field of the JSON object alike.
    """
    return None if request_id is None else {"request_id": request_id.decode("ascii")}


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
