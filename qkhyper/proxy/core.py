"""The proxy as one object an ASGI app embeds: pool, watchdog, HTTP and WebSocket forwarding.

The gateway and `static`'s API prefix both build one per worker from their
settings table (`ProxySettings`, as loaded) and hand it their lifespan, so the
watchdog task runs and idle upstream connections are closed at shutdown. The
network backend and the clock are constructor arguments, so tests run the
whole core in-process on `mock.MockBackend` and trio's `MockClock`.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Sequence

import anyio

from ..asgi.responses import answer_json
from ..asgi.types import Receive, Scope, Send
from ..config.model import Address, ProxySettings, UpstreamTlsSpec, authority
from ..metrics.recorder import ProxyMetrics
from .backend import AutoBackend, NetworkBackend, client_context
from .codec import codec_class
from .forward import BodyRewriter, Forwarder, RedirectFollower, Route
from .pool import Clock, Pool, Upstreams
from .protocol import match_prefix, raw_path, refusal
from .watchdog import Watchdog
from .websocket import WebSocketProxy


class ProxyCore:
    def __init__(
        self,
        settings: ProxySettings,
        *,
        backend: NetworkBackend | None = None,
        clock: Clock = time.monotonic,
        rewrite_body: BodyRewriter | None = None,
        follow_redirect: RedirectFollower | None = None,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pool = Pool(
            backend or AutoBackend(),
            max_idle=settings.pool_max_idle,
            idle_timeout=settings.pool_idle_timeout,
            connect_timeout=settings.connect_timeout,
            clock=clock,
            codec=codec_class(settings.upstream_parser),
        )
        self.watchdog = Watchdog(clock)
        self.forward = Forwarder(
            self.pool,
            self.watchdog,
            settings,
            rewrite_body=rewrite_body,
            follow_redirect=follow_redirect,
            clock=clock,
            metrics=metrics,
        )
        self.websocket = WebSocketProxy(
            self.pool,
            read_timeout=settings.read_timeout,
            send_timeout=settings.send_timeout,
            max_message=settings.ws_max_message_size,
            request_id=settings.request_id,
            access_log=settings.access_log,
            access_log_format=settings.access_log_format,
            clock=clock,
            metrics=metrics,
        )
        if metrics is not None:
            metrics.watch_pool(self.pool.stats)
        # One TLS context per way of checking certificates, shared by the routes that check alike
        # (and so by their pooled connections).
        self._contexts: dict[UpstreamTlsSpec, ssl.SSLContext] = {}

    def route(
        self,
        prefix: str,
        targets: Sequence[Address],
        *,
        strip: bool = True,
        idle_timeout: float | None = None,
        sse_idle_timeout: float | None = None,
        add_slashes: bool = False,
        tls: UpstreamTlsSpec | None = None,
        base: str = "",
        rewrite_host: bool = False,
        follow_redirects: bool = True,
        redirect_cache: bool = True,
        forwarded_host: bool = True,
    ) -> Route:
        """A route to `targets`; timeouts left as None are this core's settings.

        Its prefix joins the ones a redirect's Location may already start with (protocol.rewrite_location).

        Args:
            tls: the targets are https://, checked as it says (None: plain HTTP).
            base: a path put in front of every upstream path ("/v1").
            rewrite_host: send each target's own host as Host, not the client's.
            follow_redirects: follow as the core's RedirectFollower says (--fastapi-redirect), and
                remember where a redirect led when `redirect_cache`.
            forwarded_host: send X-Forwarded-Host.

        Raises:
            ssl.SSLError, OSError: `tls.ca_certs` cannot be loaded (the parent checked it at start).
        """
        if prefix:
            self.forward.prefixes.append(prefix)
        context = None
        if tls is not None:
            context = self._contexts.get(tls)
            if context is None:
                context = self._contexts[tls] = client_context(tls)
        hosts = {t: host_header(t, context is not None) for t in targets} if rewrite_host else None
        return Route(
            prefix,
            Upstreams(targets),
            strip,
            self.settings.upstream_idle_timeout if idle_timeout is None else idle_timeout,
            self.settings.sse_idle_timeout if sse_idle_timeout is None else sse_idle_timeout,
            add_slashes,
            context,
            base.encode("ascii"),
            hosts,
            follow_redirects,
            redirect_cache,
            forwarded_host,
        )

    async def refuse(self, scope: Scope, send: Send, raw: bytes, depth: int) -> bool:
        """Answer 400 and return True when `refusal` says the request may not be forwarded at all.

        The connection is closed with it: the bytes a client sends after such a
        request cannot be trusted. The gateway and static's API prefix both ask here.
        """
        refused = refusal(scope, raw, depth)
        if refused is None:
            return False
        await answer_json(scope, send, 400, {"error": "bad request", "detail": refused}, [(b"connection", b"close")])
        return True

    async def handle(self, scope: Scope, receive: Receive, send: Send, route: Route, matched: int) -> None:
        """Forward an HTTP request or a WebSocket to `route`; `matched` bytes of raw_path were its prefix."""
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send, route, matched)
        else:
            await self.forward(scope, receive, send, route, matched)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        """Answer the lifespan protocol for the app that embeds this core."""
        await receive()  # startup
        async with anyio.create_task_group() as group:
            group.start_soon(self.watchdog.run, group)
            await send({"type": "lifespan.startup.complete"})
            await receive()  # shutdown
            group.cancel_scope.cancel()
        await self.pool.aclose()
        await send({"type": "lifespan.shutdown.complete"})


def host_header(target: Address, tls: bool) -> bytes:
    """The Host a target is asked for by name: `host`, with the port unless it is the scheme's."""
    host, port = target
    if port == (443 if tls else 80):
        return (f"[{host}]" if ":" in host else host).encode("ascii")
    return authority(host, port).encode("ascii")


class PrefixProxy:
    """An ASGI app that sends everything to one route: `static`'s API prefix."""

    def __init__(self, core: ProxyCore, route: Route) -> None:
        self.core = core
        self.route = route
        self.prefix = route.prefix.encode()
        self.depth = route.prefix.count("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.core.lifespan(receive, send)
            return
        raw = raw_path(scope)
        if await self.core.refuse(scope, send, raw, self.depth):
            return
        await self.core.handle(scope, receive, send, self.route, match_prefix(raw, self.prefix) or 0)
