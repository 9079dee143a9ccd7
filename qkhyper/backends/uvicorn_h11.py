"""uvicorn's h11 protocol with qkhyper's edge limits (used where httptools is not installed).

h11 already refuses a duplicate or missing Host, and keeps an absolute-form
target in `raw_path`; what this subclass adds is the header timeout, the
keep-alive clock from the moment a connection is accepted (as Hypercorn's),
the exact head size, the refusal of Content-Length with Transfer-Encoding
before the app runs (`LimitedConnection`), and the status of such refusals
(431, or 400 with the reason) where uvicorn would answer every one with a
plain 400.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

from ..config.model import EdgeLimits
from .heads import REQUEST_TIMEOUT, HeadClock, LimitedConnection, start_clocks_at_accept, status_response

# What EdgeH11Protocol overrides or calls, with the parameters it expects.
OVERRIDES = {
    "__init__": ["self", "config", "server_state", "app_state", "_loop"],
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "handle_events": ["self"],
    "send_400_response": ["self", "msg"],
    "timeout_keep_alive_handler": ["self"],
}


class EdgeH11Protocol(H11Protocol):
    limits: ClassVar[EdgeLimits]  # set by `with_limits`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The clock runs from "waiting for a head" (accepted, or a new cycle) to a parsed head.
        self.limited = LimitedConnection(
            self.limits.max_header_size, on_head=self._head_complete, on_next_cycle=self._wait_for_head
        )
        self.conn = self.limited
        self.head_clock = HeadClock(self.loop, self.limits.header_timeout, self._head_timed_out)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        start_clocks_at_accept(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.head_clock.stop()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.head_clock.data()
        super().data_received(data)
        self.head_clock.after_data()

    def send_400_response(self, msg: str) -> None:
        if self.limited.refused is None:
            super().send_400_response(msg)
            return
        self.transport.write(status_response(*self.limited.refused, self.server_state.default_headers))
        self.transport.close()

    def _wait_for_head(self) -> None:
        if not self.transport.is_closing():
            covered = self.timeout_keep_alive if self.timeout_keep_alive_task is not None else None
            self.head_clock.start(covered=covered, saw_bytes=bool(self.limited.trailing_data[0]))

    def _head_complete(self) -> None:
        self.head_clock.stop()

    def _head_timed_out(self, saw_bytes: bool) -> None:
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # closed, or switched to a WebSocket: no longer this protocol's to close
        if saw_bytes:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()
