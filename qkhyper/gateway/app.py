"""`GatewayApp`: route by prefix, then hand the request to the proxy core."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import h11

from ..asgi.responses import answer_json, send_json
from ..asgi.types import ASGIApp, Receive, Scope, Send
from ..config.cors import check_cors
from ..config.model import GatewayOptions, GatewaySettings
from ..metrics.recorder import ProxyMetrics, Recorder
from ..proxy.core import ProxyCore
from ..proxy.forward import Route
from ..proxy.protocol import match_prefix, raw_path
from .docs_fix import fix_body, wants_fix
from .index import index

log = logging.getLogger("qkhyper.gateway")


class RouteTable:
    """Longest prefix first, on whole segments of the raw path, percent-decoded (`protocol.match_prefix`)."""

    def __init__(self, routes: list[Route], fallback: Route | None) -> None:
        ordered = sorted(routes, key=lambda r: len(r.prefix), reverse=True)
        self._match = [(r.prefix.encode(), r) for r in ordered]
        self.fallback = fallback
        self.prefixes = sorted(r.prefix for r in routes)
        self.depth = max((r.prefix.count("/") for r in routes), default=0)

    def match(self, raw_path: bytes) -> tuple[Route, int] | None:
        """The route for `raw_path` and how many of its bytes the prefix took (0 for the fallback)."""
        for prefix, route in self._match:
            matched = match_prefix(raw_path, prefix)
            if matched is not None:
                return route, matched
        return None if self.fallback is None else (self.fallback, 0)


# Route labels of requests no route took, in the metrics.
UNMATCHED = "unmatched"
REFUSED = "refused"


class GatewayApp:
    def __init__(self, table: RouteTable, core: ProxyCore) -> None:
        self.table = table
        self.core = core
        self.metrics = core.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.core.lifespan(receive, send)
            return
        raw = raw_path(scope)
        if await self.core.refuse(scope, send, raw, self.table.depth):
            if self.metrics is not None and scope["type"] == "http":
                self.metrics.unrouted(REFUSED, scope["method"], 400)
            return
        found = self.table.match(raw)
        if found is None and raw.partition(b"?")[0] == b"/" and scope.get("method") in ("GET", "HEAD"):
            await self._index(scope, send)  # no route or fallback claims `/`: list the routes
            return
        if found is None:
            body = {"error": "not found", "path": scope["path"], "prefixes": self.table.prefixes}
            await answer_json(scope, send, 404, body)
            if self.metrics is not None and scope["type"] == "http":
                self.metrics.unrouted(UNMATCHED, scope["method"], 404)
            return
        route, matched = found
        if route.add_slashes and scope["type"] == "http" and route.prefix and matched == len(raw):
            await self._add_slash(scope, send, raw)
            if self.metrics is not None:
                self.metrics.unrouted(route.label, scope["method"], 307)
        else:
            await self.core.handle(scope, receive, send, route, matched)

    async def _index(self, scope: Scope, send: Send) -> None:
        accept = next((value for name, value in scope["headers"] if name == b"accept"), None)
        content_type, body = index(self.table.prefixes, accept)
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": [*headers, (b"vary", b"Accept")]})
        await send({"type": "http.response.body", "body": body})

    async def _add_slash(self, scope: Scope, send: Send, raw: bytes) -> None:
        query = scope.get("query_string", b"")
        location = raw + b"/" + (b"?" + query if query else b"")
        await send_json(send, 307, {"redirect": location.decode("latin-1")}, [(b"location", location)])


def follow_fastapi_redirect(route: Route, path: bytes, response: h11.Response) -> bytes | None:
    """The path an upstream's trailing-slash redirect points to, if that is all it is.

    Either way round: FastAPI answers `/items` with `/items/` when the route
    has the slash, and `/items/` with `/items` when it has none. The second is
    what `--add-slashes` runs into on a route declared without a slash
    (FastAPI's own `/docs`, an SSE endpoint): followed here, instead of a
    redirect the client would follow straight back into the added slash.
    """
    if response.status_code not in (307, 308):
        return None
    location = next((v for k, v in response.headers if k == b"location"), None)
    if location is None:
        return None
    target = urlsplit(location.decode("latin-1")).path.encode("latin-1")
    if route.base and target.startswith(route.base + b"/"):  # the upstream's own base path
        target = target[len(route.base) :]
    elif route.strip and target.startswith(route.prefix.encode() + b"/"):
        target = target[len(route.prefix) :]
    bare = path.partition(b"?")[0]
    if target == bare + b"/" or (bare.endswith(b"/") and len(bare) > 1 and target == bare[:-1]):
        return target
    return None


def rewrite_docs(route: Route, path: bytes) -> Callable[[bytes], bytes] | None:
    """The docs fix for a foreign upstream's /docs, /redoc and /openapi.json under a stripped prefix."""
    if not (route.strip and route.prefix and wants_fix(path)):
        return None
    return lambda body: fix_body(path, body, route.prefix)


def create(options: GatewayOptions, *, metrics: Recorder | None = None) -> ASGIApp:
    """The gateway app for `options` (built by `qkhyper.gateway.routes.gateway_options`).

    Args:
        metrics: the worker's recorder when metrics are on (the supervisor's
            `metrics_port`); None counts nothing.
    """
    cfg = options.settings
    # A route with add_slashes follows too: its slash-removing redirects would loop through the client.
    follows = any(r.switch("fastapi_redirect", cfg) or r.switch("add_slashes", cfg) for r in options.routes)
    core = ProxyCore(
        cfg,
        rewrite_body=rewrite_docs,
        follow_redirect=follow_fastapi_redirect if follows else None,
        metrics=None if metrics is None else ProxyMetrics(metrics),
    )
    routes = [
        core.route(
            r.prefix,
            r.targets,
            strip=r.strip,
            idle_timeout=r.upstream_idle_timeout,
            sse_idle_timeout=r.sse_idle_timeout,
            add_slashes=r.switch("add_slashes", cfg),
            tls=r.tls_options if r.tls else None,
            base=r.base,
            rewrite_host=r.sends_target_host,
            follow_redirects=r.switch("fastapi_redirect", cfg) or r.switch("add_slashes", cfg),
            redirect_cache=r.switch("redirect_cache", cfg),
            forwarded_host=r.switch("add_forwarded_host", cfg),
        )
        for r in options.routes
    ]
    fallback = None
    if options.fallback:
        fallback = core.route(
            "",
            [options.fallback],
            strip=False,
            follow_redirects=cfg.fastapi_redirect,
            redirect_cache=cfg.redirect_cache,
            forwarded_host=cfg.add_forwarded_host,
        )
    app: ASGIApp = GatewayApp(RouteTable(routes, fallback), core)
    if options.docs_assets == "local":
        from ..asgi.docs_assets import DocsAssetsMiddleware

        app = DocsAssetsMiddleware(app)
    if cfg.cors_origins:
        app = cors(app, cfg)
    return app


def cors(app: ASGIApp, cfg: GatewaySettings) -> ASGIApp:
    """Starlette's CORS handling (preflights answered here, `Vary: Origin`), with qkhyper's origin rules.

    The origins were checked at config load (config/cors.py), so this cannot fail.
    """
    from starlette.middleware.cors import CORSMiddleware

    rules = check_cors(cfg.cors_origins, cfg.cors_allow_credentials, "qkhyper.gateway")
    # A page on another origin may read only the response headers CORS exposes: the request ID
    # is the one it needs to show in an error report.
    exposed = ["X-Request-ID"] if cfg.request_id else []
    return CORSMiddleware(
        app,
        allow_origins=["*"] if rules.every else list(rules.exact),
        allow_origin_regex=rules.regex,
        allow_credentials=cfg.cors_allow_credentials,
        allow_methods=cfg.cors_allow_methods,
        allow_headers=cfg.cors_allow_headers,
        expose_headers=exposed,
        max_age=cfg.cors_max_age,
    )
