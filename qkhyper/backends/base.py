"""What a backend is: a function that serves one ASGI app on an inherited socket.

Backends are imported lazily by name (`BACKENDS`), the way Hypercorn picks its
worker: a child only imports the server it runs.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..asgi.types import ASGIApp
from ..config.model import EdgeLimits
from ..tls import ServerTls

# On a graceful stop, connections a worker accepted just before it stopped accepting
# have not sent their request yet. Both servers close such "idle" connections at
# once, failing a request the client already sent (seen under a rolling restart).
# The idle sweep waits this long after accepting stops, so those requests start.
ACCEPT_GRACE = 0.5


@dataclass(frozen=True, slots=True)
class ServerOptions:
    worker_class: str
    hypercorn: dict[str, Any]  # validated top-level keys of hypercorn.toml
    limits: EdgeLimits = field(default_factory=EdgeLimits)
    tls: ServerTls | None = None  # with its password; each backend translates it (qkhyper/tls.py)
    # Offer permessage-deflate to WebSocket clients. Off for qkhyper's own servers at
    # the edge: both servers inflate a compressed frame whole before any size check.
    ws_compression: bool = True
    # [qkhyper] log_format; with "json" the servers' error and access loggers write
    # JSON objects, labelled `label`, which the supervisor merges (jsonlog.py).
    log_format: str = "text"
    label: str = ""

    @property
    def graceful_timeout(self) -> float:
        return float(self.hypercorn.get("graceful_timeout", 3.0))


class Backend(Protocol):
    def __call__(self, app: ASGIApp, sock: socket.socket, options: ServerOptions) -> bool:
        """Serve until SIGTERM, draining for `graceful_timeout`.

        Returns False when the app's lifespan startup failed (already reported
        to the supervisor by the host app), True after a normal shutdown.
        SIGTERM is the only stop request: SIGINT is ignored in children.
        """
        ...
