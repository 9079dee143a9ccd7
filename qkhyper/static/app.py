"""`StaticApp`: the ASGI app behind `qkhyper static` (SPEC §5).

Request flow, cheapest first:

1. Paths under the API prefix (on a segment boundary: `/api`, `/api/x`, not
   `/apix`) go to `self.api`, the proxy; 502 JSON while there is none.
2. Methods other than GET and HEAD: 405 with `Allow: GET, HEAD`.
3. A cached `Route` for the exact raw path: pick the encoding, one `os.stat`
   to check the file is unchanged, send precomputed headers (and the cached
   body for a small file). No parsing, regex or thread hop.
4. Otherwise resolve in a worker thread (`resolve.py`, `files.py`) and
   cache the result. A directory asked without its trailing slash, when it
   has an `index.html`, gets `301 Location: ./name/` (relative, as nginx's
   redirect but proxy-safe). A missing file gets the SPA fallback
   (`/index.html`, 200, `no-cache`) when `resolve.spa_fallback` allows it,
   else the one 404 body every refused or missing path shares.

A path refused by `resolve.parse_target` (`..`, `%2f`, dotfiles…) gets that
404 even with `Accept: text/html`: it cannot name a file, so it is no client
route either, and a scanner probing `/../../etc/passwd` sees 404, not a page.
The answer depends only on the path's syntax, never on what exists outside
the root. A symlink leaving the root, by contrast, is treated exactly as a
missing file (fallback included), so the two cannot be told apart.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlsplit

import anyio

from ..asgi.responses import send_json
from ..asgi.types import ASGIApp, Receive, Scope, Send
from ..errors import UsageError
from ..proxy.core import CoreOptions, PrefixProxy, ProxyCore
from ..proxy.forward import Route as ProxyRoute
from ..proxy.pool import Upstreams
from .cache import CACHE_BYTES, SMALL_FILE, FileCache, RouteCache
from .conditional import FULL, evaluate
from .files import Found, Redirect, Root
from .negotiate import choose
from .resolve import INDEX_TARGET, Target, parse_target, redirect_location, spa_fallback
from .respond import send_variant
from .routes import NOSNIFF, Route, make_route

RECHECK = 2.0  # seconds a cached route is trusted before its path is resolved again
INDEX_RAW = b"/index.html"
NOT_FOUND = {"error": "not found"}
ALLOW = [(b"allow", b"GET, HEAD"), NOSNIFF]
_WANTED = frozenset([b"if-none-match", b"if-modified-since", b"range", b"if-range", b"accept-encoding"])
_MAX_MEMO = 256

log = logging.getLogger("qkhyper.static")


class StaticApp:
    """Serve a built single-page app from `root`; hand the API prefix to `api`."""

    def __init__(
        self,
        root: str,
        *,
        api_prefix: str = "/api",
        api: ASGIApp | None = None,
        small_file: int = SMALL_FILE,
        cache_bytes: int = CACHE_BYTES,
        recheck: float = RECHECK,
    ) -> None:
        self.root = Root(root, small_file)
        self.api = api
        self.api_prefix = _normal_prefix(api_prefix)
        self.files = FileCache(cache_bytes)
        self.routes: RouteCache[Route] = RouteCache()
        self.recheck = recheck
        self._encodings: dict[tuple[bytes, tuple[str, ...]], str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._not_http(scope, receive, send)
            return
        if self._is_api(scope["path"]):
            await self._api(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await send_json(send, 405, {"error": "method not allowed"}, ALLOW)
            return
        raw: bytes = scope.get("raw_path") or quote(scope["path"]).encode("ascii")
        route = self.routes.get(raw)
        if route is not None and await self._serve(raw, route, scope, receive, send):
            return
        await self._resolve(raw, scope, receive, send)

    def _is_api(self, path: str) -> bool:
        prefix = self.api_prefix
        return bool(prefix) and path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")

    async def _api(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.api is None:
            await send_json(send, 502, {"error": "api proxy not available"}, [NOSNIFF])
            return
        await self.api(scope, receive, send)

    async def _not_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """WebSockets: the API's to proxy; lifespan: the proxy's (its pool and watchdog)."""
        if scope["type"] == "lifespan":
            if self.api is not None:
                await self.api(scope, receive, send)
            return
        if scope["type"] != "websocket":
            return
        if self.api is not None and self._is_api(scope["path"]):
            await self.api(scope, receive, send)
            return
        await send({"type": "websocket.close", "code": 1008})

    async def _serve(self, raw: bytes, route: Route, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer from a cached route; False when the route is stale and must be resolved."""
        now = time.monotonic()
        if now - route.checked > self.recheck:
            self.routes.put(raw, replace(route, checked=now))  # others keep using it meanwhile
            return False
        wanted = {name: value for name, value in scope["headers"] if name in _WANTED}
        accept_encoding = wanted.pop(b"accept-encoding", None)
        variant = route.identity
        if route.encodings:
            variant = route.pick(self._choose(accept_encoding, route.encodings))
        try:
            st = os.stat(variant.path)
        except OSError:
            return False
        if (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino) != variant.key:
            return False
        body = self.files.get(variant.path, variant.key) if variant.small else None
        if variant.small and body is None:
            return False
        head = scope["method"] == "HEAD"
        outcome = FULL
        if wanted:  # any validator or Range left: the rare case, decided by conditional.py
            outcome = evaluate(
                head=head,
                size=variant.size,
                etag=variant.etag,
                last_modified=variant.last_modified,
                mtime=variant.mtime,
                if_none_match=wanted.get(b"if-none-match"),
                if_modified_since=wanted.get(b"if-modified-since"),
                range_=wanted.get(b"range"),
                if_range=wanted.get(b"if-range"),
            )
        return await send_variant(send, receive, variant, body, outcome, head)

    def _choose(self, header: bytes | None, encodings: tuple[str, ...]) -> str:
        """`negotiate.choose`, memoised: clients send few distinct Accept-Encoding values."""
        memo_key = (header or b"", encodings)
        encoding = self._encodings.get(memo_key)
        if encoding is None:
            if len(self._encodings) >= _MAX_MEMO:
                self._encodings.clear()
            encoding = self._encodings[memo_key] = choose(header, encodings)
        return encoding

    async def _resolve(self, raw: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        target = parse_target(raw)
        if target is not None:
            found = await self._find(target)
            if isinstance(found, Redirect):
                location = redirect_location(target, scope.get("query_string", b""))
                await send_json(send, 301, {"location": location.decode()}, [(b"location", location), NOSNIFF])
                return
            if found is not None and await self._serve(raw, self._install(raw, found), scope, receive, send):
                return
            if spa_fallback(target, _header(scope, b"accept")) and await self._index(scope, receive, send):
                return
        await send_json(send, 404, NOT_FOUND, [NOSNIFF])

    async def _index(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """The SPA fallback: whatever `/index.html` answers, with its validators."""
        route = self.routes.get(INDEX_RAW)
        if route is not None and await self._serve(INDEX_RAW, route, scope, receive, send):
            return True
        found = await self._find(INDEX_TARGET)
        if not isinstance(found, Found):
            return False
        return await self._serve(INDEX_RAW, self._install(INDEX_RAW, found), scope, receive, send)

    async def _find(self, target: Target) -> Found | Redirect | None:
        try:
            return await anyio.to_thread.run_sync(self.root.find, target)
        except OSError:  # find maps the expected ones itself; anything else is still "not found"
            log.exception("static lookup failed for %r", target.relpath)
            return None

    def _install(self, raw: bytes, found: Found) -> Route:
        for loaded in found.files:
            if loaded.body is not None:
                self.files.put(loaded.path, loaded.key, loaded.body)
        route = make_route(found, time.monotonic())
        self.routes.put(raw, route)
        return route


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _normal_prefix(prefix: str) -> str:
    """`/api/` and `api` mean `/api`; `""` or `/` turns the API routing off."""
    prefix = prefix.strip().strip("/")
    return "/" + prefix if prefix else ""


def _api_app(options: Mapping[str, Any]) -> ASGIApp | None:
    """The proxy for the API prefix: the gateway's proxy core, one route, prefix stripped."""
    prefix = _normal_prefix(str(options.get("api_prefix", "")))
    target = options.get("api_target")
    if not prefix or not target:
        return None
    host, port = api_target_address(str(target))
    return PrefixProxy(ProxyCore(CoreOptions()), ProxyRoute(prefix, Upstreams([(host, port)])))


def api_target_address(target: str) -> tuple[str, int]:
    """`http://HOST[:PORT]` as (host, port).

    Raises:
        UsageError: another scheme, a path, or no host.
    """
    parts = urlsplit(target)
    try:
        port = parts.port or 80
    except ValueError:
        port = -1
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or port < 1:
        raise UsageError(f"--api-target {target!r} must look like http://HOST[:PORT]")
    return parts.hostname, port


def create(options: Mapping[str, Any]) -> StaticApp:
    """The factory `qkhyper static` runs in each worker (`qkhyper.api.STATIC_FACTORY`).

    Args:
        options: `root` (absolute path), `api_prefix`, `api_target`.

    Raises:
        UsageError: the root is not a folder.
    """
    root = str(options["root"])
    if not os.path.isdir(root):
        raise UsageError(f"static root not found: {root}")
    return StaticApp(root, api_prefix=str(options.get("api_prefix", "/api")), api=_api_app(options))
