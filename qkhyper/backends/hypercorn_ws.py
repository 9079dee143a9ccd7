"""Hypercorn's WebSocket handshake without permessage-deflate, for qkhyper's own servers.

wsproto inflates a compressed frame as it arrives, with no bound on the
output (`zlib` without `max_length`), and Hypercorn compares a message with
`websocket_max_message_size` only after that: one 64 KiB read of a deflate
bomb becomes about 64 MiB in the worker, per connection, before any limit
applies. The gateway and static relay messages to an upstream; compressing
the client's leg buys them little, so they offer no extension at all and a
compressed frame is a protocol error (close 1002). uvicorn has a switch for
the same (`ws_per_message_deflate`). Apps under `serve` keep the server's
default.

`install` points `hypercorn.protocol.ws_stream.Handshake`, the module global
`WSStream.handle` builds from, at the subclass, in the worker process only.
"""

from __future__ import annotations

from hypercorn.protocol import ws_stream

from .guards import require

OVERRIDES = {"__init__": ["self", "headers", "http_version"]}


class PlainHandshake(ws_stream.Handshake):
    """Reads the client's handshake as Hypercorn does, but forgets the extensions it offered."""

    def __init__(self, headers: list[tuple[bytes, bytes]], http_version: str) -> None:
        super().__init__(headers, http_version)
        self.extensions = None  # `accept` then negotiates none


def install() -> None:
    """Make Hypercorn's WebSocket streams use `PlainHandshake` (in this worker process).

    Raises:
        TypeError: Hypercorn's Handshake no longer matches OVERRIDES.
    """
    require(ws_stream.Handshake, OVERRIDES)
    ws_stream.Handshake = PlainHandshake  # type: ignore[misc]
