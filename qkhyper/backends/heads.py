"""Reading request heads within qkhyper's edge limits: the pieces both servers' patches share.

`max_header_size` counts the request line and the header lines; `header_timeout`
runs from the moment a server starts waiting for a request head (a connection
accepted, or the previous exchange finished on a keep-alive connection) until
that head is complete. nginx calls them `large_client_header_buffers` and
`client_header_timeout`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Protocol

import h11

from .guards import require

# What LimitedConnection and head_refusal use of h11, with the parameters they expect.
CONNECTION_USES = {"next_event": ["self"], "start_next_cycle": ["self"]}
HEADERS_USES = {"raw_items": ["self"]}


def require_h11() -> None:
    """Raise TypeError if h11 moved what this module relies on (see guards)."""
    require(h11.Connection, CONNECTION_USES)
    require(type(h11.Request(method="GET", target="/", headers=[("Host", "a")]).headers), HEADERS_USES)


def status_response(status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """A complete response that ends the connection, for answers given before any app runs."""
    body = detail.encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode(),
        *(name + b": " + value for name, value in headers),
        b"content-type: text/plain; charset=utf-8",
        b"content-length: %d" % len(body),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


REQUEST_TIMEOUT = status_response(408, "request head not received in time")


def head_refusal(request: h11.Request, max_header_size: int) -> tuple[int, str] | None:
    """The status and reason a parsed head is refused with, or None.

    The size is counted from the parsed event (public h11 API) rather than
    h11's buffer: request line and header lines with their CRLFs; h11 strips
    the optional whitespace around values, so padding is not counted.
    Content-Length with Transfer-Encoding is refused here, before any app runs
    (RFC 9112 §6.1: such a request MUST be answered and the connection closed),
    since the body is framed as chunked and what follows the chunked end would
    otherwise run as the next request.
    """
    size = len(request.method) + len(request.target) + len(request.http_version) + 11  # " ", " HTTP/", 2 CRLFs
    content_length = transfer_encoding = False
    for name, value in request.headers.raw_items():  # a list: faster than the Sequence's own iteration
        name_size = len(name)
        size += name_size + len(value) + 4  # ": ", CRLF
        if name_size in (14, 17):  # the two names below; most headers are neither
            lowered = name.lower()
            content_length = content_length or lowered == b"content-length"
            transfer_encoding = transfer_encoding or lowered == b"transfer-encoding"
    if size > max_header_size:
        return 431, f"request head larger than {max_header_size} bytes"
    if content_length and transfer_encoding:
        return 400, "both Content-Length and Transfer-Encoding"
    return None


class LimitedConnection(h11.Connection):
    """An h11 server connection that applies `head_refusal` to every head.

    h11's own `max_incomplete_event_size` only limits a head that is still
    incomplete, so a larger head that arrives in one read (Hypercorn reads
    64 KiB at a time) would pass; a complete head is measured here as well.
    A refusal is raised as h11's `RemoteProtocolError`, which both servers
    answer (with `Connection: close`) before any app runs. `refused` keeps
    the status and reason of such a refusal (or of h11's own 431), which
    uvicorn would otherwise answer as a plain 400.
    """

    def __init__(
        self,
        max_header_size: int,
        on_head: Callable[[], None] | None = None,
        on_next_cycle: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_header_size)
        self.max_header_size = max_header_size
        self.on_head = on_head
        self.on_next_cycle = on_next_cycle
        self.refused: tuple[int, str] | None = None

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:  # an incomplete head already over the limit
                self.refused = (431, f"request head larger than {self.max_header_size} bytes")
            raise
        if isinstance(event, h11.Request):
            self.refused = head_refusal(event, self.max_header_size)
            if self.refused is not None:
                raise h11.RemoteProtocolError(self.refused[1], error_status_hint=self.refused[0])
            if self.on_head is not None:
                self.on_head()
        return event

    def start_next_cycle(self) -> None:
        super().start_next_cycle()
        if self.on_next_cycle is not None:
            self.on_next_cycle()


def host_refusal(headers: Iterable[tuple[bytes, bytes]], http_version: str) -> str | None:
    """Why a head's Host headers are refused (as h11 refuses them), or None.

    RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without a
    Host header or with more than one.
    """
    hosts = [name for name, _ in headers].count(b"host")
    if hosts > 1:
        return "more than one Host header"
    if hosts == 0 and http_version == "1.1":
        return "HTTP/1.1 request without a Host header"
    return None


class HeadClock:
    """The header timeout of one asyncio connection (uvicorn's protocols).

    `start` when the server begins waiting for a request head, `stop` when the
    head is complete; `data()` before and `after_data()` after each read. On
    expiry, `expired(saw_bytes)` is called: whether part of a head had
    arrived, which is answered 408 before the close.

    While no byte has arrived and the server's own keep-alive timer runs
    (`covered`), that timer, not shorter than this one, closes the connection
    first, so no timer is armed here: the common request, whose head arrives in
    one read, then costs a clock reading instead of a timer (measured: about
    3 µs less per request). The timer is armed once a read leaves the head
    incomplete, for what is left of `timeout`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, expired: Callable[[bool], None]) -> None:
        self.loop = loop
        self.timeout = timeout
        self.expired = expired
        self.handle: asyncio.TimerHandle | None = None
        self.waiting = False
        self.since = 0.0
        self.saw_bytes = False

    def start(self, *, covered: float | None, saw_bytes: bool = False) -> None:
        """Begin waiting for a head.

        Args:
            covered: the server's keep-alive timeout if its timer is running now, else None.
            saw_bytes: part of the next head had already arrived (pipelined behind the last request).
        """
        self.stop()
        self.waiting = True
        self.since = self.loop.time()
        self.saw_bytes = saw_bytes
        if saw_bytes or covered is None or covered > self.timeout:
            self.handle = self.loop.call_at(self.since + self.timeout, self._fire)

    def stop(self) -> None:
        self.waiting = False
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def data(self) -> None:
        if self.waiting:
            self.saw_bytes = True

    def after_data(self) -> None:
        if self.waiting and self.handle is None:
            self.handle = self.loop.call_at(self.since + self.timeout, self._fire)

    def _fire(self) -> None:
        self.handle = None
        self.waiting = False
        self.expired(self.saw_bytes)


class UvicornClocks(Protocol):
    """What `start_clocks_at_accept` needs of a uvicorn HTTP protocol with a `HeadClock`."""

    timeout_keep_alive_task: asyncio.TimerHandle | None

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def timeout_keep_alive(self) -> float: ...
    @property
    def head_clock(self) -> HeadClock: ...

    def timeout_keep_alive_handler(self) -> None: ...


def start_clocks_at_accept(protocol: UvicornClocks) -> None:
    """Both uvicorn protocols' `connection_made`: the keep-alive and header clocks start at accept.

    uvicorn starts its keep-alive clock only after a first response, so a
    connection that never sends a byte would stay open; Hypercorn starts it at
    accept, and now uvicorn does too.
    """
    protocol.timeout_keep_alive_task = protocol.loop.call_later(
        protocol.timeout_keep_alive, protocol.timeout_keep_alive_handler
    )
    protocol.head_clock.start(covered=protocol.timeout_keep_alive)
