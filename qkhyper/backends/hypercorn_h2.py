"""Hypercorn's HTTP/2 protocol, with the header limit it advertises actually applied.

With TLS, Hypercorn speaks HTTP/2 to every client that offers it (ALPN), so
`max_header_size` must mean there what it means on HTTP/1.1: a head up to the
limit is served, a bigger one gets 431 from the edge check (asgi/edge.py).
Hypercorn passes `h2_max_header_list_size` to h2 only as the *advertised*
setting: h2 moves its HPACK decoder to an advertised value when the client
acknowledges a change of settings, and initial values are no change, so the
decoder keeps h2's 64 KiB and closes the whole connection (ENHANCE_YOUR_CALM)
above it, whatever was advertised. This subclass sets the decoder to the
advertised value when the connection is made. `install` points
`hypercorn.protocol.H2Protocol`, the module global `ProtocolWrapper` builds
from, at it, in the worker process only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import hypercorn.protocol
from hypercorn.protocol.h2 import H2Protocol

from .guards import require

OVERRIDES = {
    "__init__": [
        "self",
        "app",
        "config",
        "context",
        "task_group",
        "connection_state",
        "ssl",
        "client",
        "server",
        "send",
    ],
}


class EdgeH2Protocol(H2Protocol):
    def __init__(
        self,
        app: Any,
        config: Any,
        context: Any,
        task_group: Any,
        connection_state: Any,
        ssl: bool,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        super().__init__(app, config, context, task_group, connection_state, ssl, client, server, send)
        self.connection.decoder.max_header_list_size = config.h2_max_header_list_size


def install() -> None:
    """Make Hypercorn build `EdgeH2Protocol`s (in this worker process).

    Raises:
        TypeError: Hypercorn's H2Protocol no longer matches OVERRIDES.
        AttributeError: h2's connection has no HPACK decoder where it had.
    """
    require(H2Protocol, OVERRIDES)
    hypercorn.protocol.H2Protocol = EdgeH2Protocol  # type: ignore[attr-defined]
