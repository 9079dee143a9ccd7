"""`GatewayApp`: route by prefix, then hand the request to the proxy core."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from ..asgi.responses import send_json
from ..asgi.types import ASGIApp, Receive, Scope, Send
from ..proxy.core import CoreOptions, ProxyCore
from ..proxy.forward import Route, UpstreamResponse
from ..proxy.pool import Upstreams
from .docs_fix import fix_body, wants_fix

log = logging.getLogger("qkhyper.gateway")


class RouteTable:
    """Longest prefix first, on path-segment boundaries of the raw path."""

    def __init__(self, routes: list[Route], fallback: Route | None) -> None:
        ordered = sorted(routes, key=lambda r: len(r.prefix), reverse=True)
        self._match = [(r.prefix.encode(), r.prefix.encode() + b"/", r) for r in ordered]
        self.fallback = fallback
        self.prefixes = sorted(r.prefix for r in routes)
        self.depth = max((r.prefix.count("/") for r in routes), default=0)

    def match(self, raw_path: bytes) -> Route | None:
        for exact, below, route in self._match:
            if raw_path == exact or raw_path.startswith(below):
                return route
        return self.fallback


def suspicious(raw_path: bytes, depth: int) -> bool:
    """`.`/`..` or an encoded slash in the segments a prefix could match: path confusion."""
    if b"%" not in raw_path and b"." not in raw_path and b"\\" not in raw_path:
        return False  # the common case, without splitting
    for segment in raw_path.split(b"/", depth + 1)[1 : depth + 1]:
        lowered = segment.lower()
        if b"%2f" in lowered or b"%5c" in lowered or b"\\" in segment:
            return True
        if unquote_to_bytes(segment) in (b".", b".."):
            return True
    return False


class GatewayApp:
    def __init__(self, table: RouteTable, core: ProxyCore, *, add_slashes: bool) -> None:
        self.table = table
        self.core = core
        self.add_slashes = add_slashes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.core.lifespan(receive, send)
            return
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        if scope.get("method") == "CONNECT" or not raw.startswith(b"/") or suspicious(raw, self.table.depth):
            await self._reject(scope, send, 400, {"error": "bad request", "detail": "path not allowed"})
            return
        route = self.table.match(raw)
        if route is None:
            body = {"error": "not found", "path": scope["path"], "prefixes": self.table.prefixes}
            await self._reject(scope, send, 404, body)
        elif self.add_slashes and scope["type"] == "http" and route.prefix and raw == route.prefix.encode():
            await self._add_slash(scope, send, raw)
        else:
            await self.core.handle(scope, receive, send, route)

    async def _reject(self, scope: Scope, send: Send, status: int, body: dict[str, Any]) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await send_json(send, status, body)

    async def _add_slash(self, scope: Scope, send: Send, raw: bytes) -> None:
        query = scope.get("query_string", b"")
        location = raw + b"/" + (b"?" + query if query else b"")
        await send_json(send, 307, {"redirect": location.decode("latin-1")}, [(b"location", location)])


def _fastapi_redirect(route: Route, path: bytes, response: UpstreamResponse) -> bytes | None:
    """The path an upstream's trailing-slash redirect points to, if that is all it is."""
    if response.event.status_code not in (307, 308):
        return None
    location = next((v for k, v in response.event.headers if k == b"location"), None)
    if location is None:
        return None
    target = urlsplit(location.decode("latin-1")).path.encode("latin-1")
    if route.strip and target.startswith(route.prefix.encode() + b"/"):
        target = target[len(route.prefix) :]
    bare = path.partition(b"?")[0]
    return target if target == bare + b"/" else None


def _routes(options: dict[str, Any]) -> tuple[list[Route], Route | None]:
    routes = [
        Route(r["prefix"], Upstreams([(h, p) for h, p in r["targets"]]), bool(r["strip"])) for r in options["routes"]
    ]
    fallback = options.get("fallback")
    return routes, (Route("", Upstreams([(fallback[0], fallback[1])]), False) if fallback else None)


def create(options: dict[str, Any]) -> ASGIApp:
    """The gateway app for `options` (built by `qkhyper.api.gateway`)."""
    routes, fallback = _routes(options)
    core = ProxyCore(
        CoreOptions(
            connect_timeout=options["connect_timeout"],
            read_timeout=options["read_timeout"],
            pool_idle_timeout=options["pool_idle_timeout"],
            pool_max_idle=options["pool_max_idle"],
            max_body_size=options["max_body_size"],
            access_log=options["access_log"],
        )
    )
    forwarder = core.forward
    forwarder.body_hook = lambda route, path: (
        (lambda p, body: fix_body(p, body, route.prefix)) if route.strip and route.prefix and wants_fix(path) else None
    )
    if options["fastapi_redirect"]:
        forwarder.redirect_hook = _fastapi_redirect
    app: ASGIApp = GatewayApp(RouteTable(routes, fallback), core, add_slashes=options["add_slashes"])
    if options["docs_assets"] == "local":
        from ..asgi.docs_assets import DocsAssetsMiddleware

        app = DocsAssetsMiddleware(app)
    if options["cors_origins"]:
        from starlette.middleware.cors import CORSMiddleware

        app = CORSMiddleware(app, allow_origins=options["cors_origins"], allow_methods=["*"], allow_headers=["*"])
    return app
