"""The proxy as one object an ASGI app embeds: pool, watchdog, HTTP and WebSocket forwarding.

The gateway and `static`'s API prefix both build one per worker and hand it
their lifespan, so the watchdog task runs and idle upstream connections are
closed at shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from ..asgi.types import Receive, Scope, Send
from .forward import Forwarder, ProxyOptions, Route
from .pool import Pool
from .watchdog import Watchdog
from .websocket import forward_websocket


@dataclass(frozen=True)
class CoreOptions:
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    pool_idle_timeout: float = 4.0
    pool_max_idle: int = 64
    max_body_size: int = 0
    access_log: bool = False


class ProxyCore:
    def __init__(self, options: CoreOptions) -> None:
        self.options = options
        pool = Pool(
            max_idle=options.pool_max_idle,
            idle_timeout=options.pool_idle_timeout,
            connect_timeout=options.connect_timeout,
        )
        proxy_options = ProxyOptions(options.read_timeout, options.max_body_size, options.access_log)
        self.forward = Forwarder(pool, Watchdog(), proxy_options)

    async def handle(self, scope: Scope, receive: Receive, send: Send, route: Route) -> None:
        """Forward an HTTP request or a WebSocket to `route`."""
        if scope["type"] == "websocket":
            await forward_websocket(scope, receive, send, route, self.options.connect_timeout)
        else:
            await self.forward(scope, receive, send, route)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        """Answer the lifespan protocol for the app that embeds this core."""
        await receive()  # startup
        async with anyio.create_task_group() as group:
            group.start_soon(self.forward.watchdog.run, group)
            await send({"type": "lifespan.startup.complete"})
            await receive()  # shutdown
            group.cancel_scope.cancel()
        await self.forward.pool.aclose()
        await send({"type": "lifespan.shutdown.complete"})


class PrefixProxy:
    """An ASGI app that sends everything to one route: `static`'s API prefix."""

    def __init__(self, core: ProxyCore, route: Route) -> None:
        self.core = core
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.core.lifespan(receive, send)
        else:
            await self.core.handle(scope, receive, send, self.route)
