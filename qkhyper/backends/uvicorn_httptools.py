"""uvicorn's httptools protocol with qkhyper's edge limits (uvicorn's choice where httptools is installed).

httptools (llhttp) has no limit on a head's size and no timeout, accepts an
HTTP/1.1 request with no Host or two, and uvicorn reduces an absolute-form
target (`GET http://evil.example/users/1`) to its path, so a gateway behind it
cannot tell. This subclass answers 431 past `max_header_size` (counted as the
bytes arrive, since llhttp buffers a header value whole before any callback),
400 for Host as h11 does, keeps the whole target in `raw_path` and `path` as
h11 and Hypercorn do, and adds the header timeout and the keep-alive clock
from accept (as Hypercorn's).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar
from urllib.parse import unquote

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config.model import EdgeLimits
from .heads import REQUEST_TIMEOUT, HeadClock, host_refusal, start_clocks_at_accept, status_response

# What EdgeHttpToolsProtocol overrides or calls, with the parameters it expects.
OVERRIDES = {
    "__init__": ["self", "config", "server_state", "app_state", "_loop"],
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "on_message_begin": ["self"],
    "on_headers_complete": ["self"],
    "on_message_complete": ["self"],
    "on_response_complete": ["self"],
    "send_400_response": ["self", "msg"],
    "timeout_keep_alive_handler": ["self"],
}


class HeadHolder:
    """The transport a response cycle writes to: the first write of each response waits for the next.

    uvicorn writes a response's head and its body in two `write` calls, and
    on uvloop each is a `send()` system call: for a small response, a third
    of a gateway worker's time (py-spy, issue 13). Here the first write of
    each cycle (the head, or a `100 Continue`) is held until the next write,
    and both go out in one `writelines` (one vectored send), or, when the
    app writes nothing more in this turn of the event loop (a stream whose
    first chunk comes later), on its own at the start of the next turn. Every
    other call goes to the transport, and `close` sends what is held first.
    """

    __slots__ = ("held", "hold_next", "loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.held: bytes | None = None
        self.hold_next = False

    def expect_response(self) -> None:
        """A new cycle begins: hold its first write."""
        self.hold_next = True

    def write(self, data: bytes) -> None:
        held = self.held
        if held is not None:
            self.held = None
            self.transport.writelines((held, data))
        elif self.hold_next:
            self.hold_next = False
            self.held = bytes(data)
            self.loop.call_soon(self.flush)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        held = self.held
        if held is not None:
            self.held = None
            if not self.transport.is_closing():
                self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class Refused(Exception):
    """Raised in a parser callback; httptools re-raises it as a parser error, and uvicorn answers it."""


class EdgeHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[EdgeLimits]  # set by `with_limits`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_bytes: int | None = 0  # bytes of the head being read; None while a body is
        self.heads = 0  # heads completed on this connection
        self.head_begun = False  # a byte of the next request was parsed
        self.refusal: tuple[int, str] | None = None  # what send_400_response should say instead
        self.head_clock = HeadClock(self.loop, self.limits.header_timeout, self._head_timed_out)
        self.holder: HeadHolder | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.holder = HeadHolder(transport, self.loop)
        start_clocks_at_accept(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.head_clock.stop()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.head_clock.data()
        while self.head_bytes is not None and len(data) > self.limits.max_header_size - self.head_bytes:
            # Feed only what the head may still take; if it is not complete by then, refuse.
            budget = self.limits.max_header_size - self.head_bytes
            heads = self.heads
            self.head_bytes += budget
            super().data_received(data[:budget])
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return
            if self.heads == heads:
                self._refuse(431, f"request head larger than {self.limits.max_header_size} bytes")
                return
            data = data[budget:]
        if self.head_bytes is not None:
            self.head_bytes += len(data)
        super().data_received(data)
        self.head_clock.after_data()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_begun = True

    def on_headers_complete(self) -> None:
        self.heads += 1
        self.head_bytes = None
        self.head_clock.stop()
        problem = host_refusal(self.headers, self.parser.get_http_version())
        if problem is not None:
            self.refusal = (400, problem)
            raise Refused(problem)
        cycle = self.cycle
        super().on_headers_complete()
        if self.cycle is not cycle and self.cycle is not None and self.holder is not None:
            self.holder.expect_response()
            self.cycle.transport = self.holder  # type: ignore[assignment]  # the transport's interface, held heads
        if not self.url.startswith(b"/") and "raw_path" in self.scope:
            # Absolute-form (or `*`): the whole target, as h11 passes it, so apps
            # and the gateway see what was asked for (the query is already split off).
            target = self.url.partition(b"?")[0]
            self.scope["raw_path"] = self.root_path.encode("ascii") + target
            self.scope["path"] = self.root_path + unquote(target.decode("ascii"))

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.head_bytes = 0
        self.head_begun = False
        if not self.parser.should_upgrade():  # a WebSocket's connection is about to change hands
            self._wait_for_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timer, or starts a pipelined request
        self._wait_for_head()

    def send_400_response(self, msg: str) -> None:
        if self.refusal is None:
            super().send_400_response(msg)
        else:
            self._refuse(*self.refusal)

    def _wait_for_head(self) -> None:
        """Start the header clock once the request was read and answered, with no next head parsed yet."""
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self.head_bytes is not None and not self.transport.is_closing():
            covered = self.timeout_keep_alive if self.timeout_keep_alive_task is not None else None
            self.head_clock.start(covered=covered, saw_bytes=self.head_begun)

    def _refuse(self, status: int, detail: str) -> None:
        self.refusal = None
        self.transport.write(status_response(status, detail, self.server_state.default_headers))
        self.transport.close()

    def _head_timed_out(self, saw_bytes: bool) -> None:
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # closed, or switched to a WebSocket: no longer this protocol's to close
        if saw_bytes:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()
