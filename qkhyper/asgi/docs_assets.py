"""FastAPI docs that work without internet.

FastAPI's `/docs` and `/redoc` pages load Swagger UI and ReDoc from a CDN, so
they render blank on air-gapped machines. qkhyper serves the same files from
the `fastapi-offline` package under `/_qkhyper/docs/` and points small HTML
pages at them (`docs_assets = "local"`, the default).

Assets live under the request's `root_path`, so behind the gateway
(`X-Forwarded-Prefix: /users`) the page asks for `/users/_qkhyper/docs/...`,
which the gateway routes back to the same app.
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any

from .mounts import route_path
from .types import ASGIApp, Message, Receive, Scope, Send

ASSET_PATH = "/_qkhyper/docs/"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
_CDN = [
    (
        re.compile(rb"https://cdn\.jsdelivr\.net/npm/swagger-ui-dist@[^/\"']+/swagger-ui-bundle\.js"),
        "swagger-ui-bundle.js",
    ),
    (re.compile(rb"https://cdn\.jsdelivr\.net/npm/swagger-ui-dist@[^/\"']+/swagger-ui\.css"), "swagger-ui.css"),
    (
        re.compile(rb"https://cdn\.jsdelivr\.net/npm/redoc@[^/\"']+/bundles/redoc\.standalone\.js"),
        "redoc.standalone.js",
    ),
    (re.compile(rb"https://fastapi\.tiangolo\.com/img/favicon\.png"), "favicon.png"),
]
# Only HTML responses this small are inspected; FastAPI's docs pages are ~1 KB.
MAX_REWRITE = 64 * 1024


def rewrite_docs_html(body: bytes, root_path: str) -> bytes:
    """Point the CDN URLs of a docs page at qkhyper's local copies."""
    base = (root_path.rstrip("/") + ASSET_PATH).encode()
    for pattern, name in _CDN:
        body = pattern.sub(base + name.encode(), body)
    return body


def load_asset(name: str) -> bytes:
    return files("fastapi_offline").joinpath("static", name).read_bytes()


class DocsAssetsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._cache: dict[str, bytes] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if ASSET_PATH in scope["path"]:
            path = route_path(scope)
            if path.startswith(ASSET_PATH) and path[len(ASSET_PATH) :] in ASSETS:
                await self._asset(path[len(ASSET_PATH) :], scope, send)
                return
        if scope["method"] != "GET" or not _wants_html(scope["headers"]):
            await self.app(scope, receive, send)
            return
        rewriter = _HtmlRewriter(send, scope.get("root_path", ""))
        try:
            await self.app(scope, receive, rewriter)
        except Exception:  # not on cancellation: the server is abandoning the response anyway
            await rewriter.flush()
            raise
        await rewriter.flush()

    async def _asset(self, name: str, scope: Scope, send: Send) -> None:
        if name not in self._cache:
            self._cache[name] = load_asset(name)
        body = self._cache[name]
        headers = [
            (b"content-type", ASSETS[name].encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"public, max-age=86400"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


class _HtmlRewriter:
    """A `send` that rewrites small, complete HTML bodies and passes all else through.

    It holds the response start until the body is complete; `flush` hands on
    what it holds when the app ended (returned or raised) before that, so the
    server sees the same incomplete response it would have seen without it.
    """

    def __init__(self, send: Send, root_path: str) -> None:
        self.send = send
        self.root_path = root_path
        self.start: Message | None = None
        self.parts: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and _is_small_html(message["headers"]):
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.parts.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        start, self.start = self.start, None
        body = rewrite_docs_html(b"".join(self.parts), self.root_path)
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    async def flush(self) -> None:
        if self.start is None:
            return
        start, self.start = self.start, None
        await self.send(start)
        if self.parts:
            await self.send({"type": "http.response.body", "body": b"".join(self.parts), "more_body": True})


def _wants_html(headers: Any) -> bool:
    """Docs pages are opened by browsers, which ask for HTML; API clients are left alone."""
    return any(name == b"accept" and b"text/html" in value for name, value in headers)


def _is_small_html(headers: Any) -> bool:
    content_type = length = b""
    for key, value in headers:
        key = key.lower()
        if key == b"content-type":
            content_type = value
        elif key == b"content-length":
            length = value
    return content_type.startswith(b"text/html") and length.isdigit() and int(length) <= MAX_REWRITE
