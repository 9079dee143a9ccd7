"""`StaticApp`: the ASGI app behind `qkhyper static` (SPEC §5).

Request flow, cheapest first:

1. Paths under the API prefix (on a segment boundary: `/api`, `/api/x`, not
   `/apix`) go to `self.api`, the proxy; 502 JSON while there is none.
2. Methods other than GET and HEAD: 405 with `Allow: GET, HEAD`.
3. A cached `Resource` for the exact raw path: pick the encoding, one `os.stat`
   to check the file is unchanged, send precomputed headers (and the cached
   body for a small file). No parsing, regex or thread hop.
4. Otherwise resolve in a worker thread (`resolve.py`, `files.py`) and
   cache the result. A directory asked without its trailing slash, when it
   has an `index.html`, gets `301 Location: ./name/` (relative, as nginx's
   redirect but proxy-safe). A missing file gets the SPA fallback
   (`/index.html`, 200, `no-cache`) when `resolve.spa_fallback` allows it,
   else the one 404 body every refused or missing path shares.

A path refused by `resolve.parse_path` (`..`, `%2f`, dotfiles…) gets that
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
from dataclasses import replace

import anyio

from ..asgi.responses import send_json
from ..asgi.types import ASGIApp, Message, Receive, Scope, Send
from ..config.model import StaticOptions
from ..errors import UsageError
from ..metrics.recorder import ProxyMetrics, Recorder, StaticMetrics
from ..proxy.core import PrefixProxy, ProxyCore
from ..proxy.protocol import match_prefix, raw_path
from .cache import CACHE_BYTES, SMALL_FILE, FileCache, ResourceCache
from .conditional import FULL, evaluate
from .files import Found, Redirect, Root
from .negotiate import choose
from .resolve import INDEX_PATH, RequestPath, parse_path, redirect_location, spa_fallback
from .resources import NOSNIFF, Resource, make_resource
from .respond import send_variant

RECHECK = 2.0  # seconds a cached resource is trusted before its path is resolved again
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
        metrics: StaticMetrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.root = Root(root, small_file)
        self.api = api
        self.api_prefix = _normal_prefix(api_prefix)
        self._prefix = self.api_prefix.encode()  # b"" when there is no API prefix
        self.files = FileCache(cache_bytes)
        self.resources: ResourceCache[Resource] = ResourceCache()
        self.recheck = recheck
        self._encodings: dict[tuple[bytes, tuple[str, ...]], str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._not_http(scope, receive, send)
            return
        raw = raw_path(scope)
        if self._prefix and match_prefix(raw, self._prefix) is not None:
            await self._api(scope, receive, send)
            return
        if self.metrics is not None:
            await self._counted(raw, scope, receive, send, self.metrics)
            return
        await self._files(raw, scope, receive, send)

    async def _files(self, raw: bytes, scope: Scope, receive: Receive, send: Send) -> bool | None:
        """Answer a request for a file; True when the resource cache answered it, False or None when not."""
        if scope["method"] not in ("GET", "HEAD"):
            await send_json(send, 405, {"error": "method not allowed"}, ALLOW)
            return None
        resource = self.resources.get(raw)
        if resource is not None and await self._serve(raw, resource, scope, receive, send):
            return True
        await self._resolve(raw, scope, receive, send)
        return False

    async def _counted(self, raw: bytes, scope: Scope, receive: Receive, send: Send, metrics: StaticMetrics) -> None:
        """`_files`, watching what is sent: the status, the body bytes, and whether the cache answered."""
        status = 0
        sent = 0

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            hit = await self._files(raw, scope, receive, counting_send)
        finally:
            metrics.response(status, sent)
        if hit is not None:
            metrics.cache(hit)

    def _is_api(self, scope: Scope) -> bool:
        """On whole, percent-decoded segments of the raw path, as the gateway matches its prefixes."""
        return bool(self._prefix) and match_prefix(raw_path(scope), self._prefix) is not None

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
        if self.api is not None and self._is_api(scope):
            await self.api(scope, receive, send)
            return
        await send({"type": "websocket.close", "code": 1008})

    async def _serve(self, raw: bytes, resource: Resource, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer from a cached resource; False when it is stale and must be resolved again."""
        now = time.monotonic()
        if now - resource.checked > self.recheck:
            self.resources.put(raw, replace(resource, checked=now))  # others keep using it meanwhile
            return False
        wanted: dict[bytes, bytes] | None = None  # most requests have none of these headers
        for name, value in scope["headers"]:
            if name in _WANTED:
                if wanted is None:
                    wanted = {}
                wanted[name] = value
        accept_encoding = None if wanted is None else wanted.pop(b"accept-encoding", None)
        variant = resource.identity
        if resource.encodings:
            variant = resource.pick(self._choose(accept_encoding, resource.encodings))
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
        if not wanted and body is not None and not head:
            # The common case, what send_variant does for it: the whole small body, from memory.
            await send({"type": "http.response.start", "status": 200, "headers": variant.full})
            await send({"type": "http.response.body", "body": body})
            return True
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
        target = parse_path(raw)
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
        resource = self.resources.get(INDEX_RAW)
        if resource is not None and await self._serve(INDEX_RAW, resource, scope, receive, send):
            return True
        found = await self._find(INDEX_PATH)
        if not isinstance(found, Found):
            return False
        return await self._serve(INDEX_RAW, self._install(INDEX_RAW, found), scope, receive, send)

    async def _find(self, target: RequestPath) -> Found | Redirect | None:
        try:
            return await anyio.to_thread.run_sync(self.root.find, target)
        except OSError:  # find maps the expected ones itself; anything else is still "not found"
            log.exception("static lookup failed for %r", target.relpath)
            return None

    def _install(self, raw: bytes, found: Found) -> Resource:
        for loaded in found.files:
            if loaded.body is not None:
                self.files.put(loaded.path, loaded.key, loaded.body)
        resource = make_resource(found, time.monotonic())
        self.resources.put(raw, resource)
        return resource


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _normal_prefix(prefix: str) -> str:
    """`/api/` and `api` mean `/api`; `""` or `/` turns the API routing off."""
    prefix = prefix.strip().strip("/")
    return "/" + prefix if prefix else ""


def _api_app(options: StaticOptions, metrics: Recorder | None) -> ASGIApp | None:
    """The proxy for the API prefix: the gateway's proxy core, one route, prefix stripped.

    With metrics on it counts as the gateway does (`qkhyper_gateway_*`, route = the prefix).
    """
    prefix = _normal_prefix(options.settings.api_prefix)
    if not prefix or options.api_target is None:
        return None
    core = ProxyCore(options.settings, metrics=None if metrics is None else ProxyMetrics(metrics))
    route = core.route(
        prefix,
        [options.api_target],
        tls=options.api_tls,
        base=options.api_base,
        rewrite_host=options.api_rewrite_host,
    )
    return PrefixProxy(core, route)


def create(options: StaticOptions, *, metrics: Recorder | None = None) -> StaticApp:
    """The factory `qkhyper static` runs in each worker (`qkhyper.api.STATIC_FACTORY`).

    Args:
        metrics: the worker's recorder when metrics are on; None counts nothing.

    Raises:
        UsageError: the root is not a folder.
    """
    if not os.path.isdir(options.root):
        raise UsageError(f"static root not found: {options.root}")
    return StaticApp(
        options.root,
        api_prefix=options.settings.api_prefix,
        api=_api_app(options, metrics),
        metrics=None if metrics is None else StaticMetrics(metrics),
    )
