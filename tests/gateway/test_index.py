"""`GET /` on the gateway when no route claims it: the route list, JSON or a small escaped HTML page."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qkhyper.config.model import GatewayOptions, GatewaySettings, RouteSpec
from qkhyper.gateway.app import create
from qkhyper.gateway.index import index

pytestmark = pytest.mark.anyio

BROWSER = b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, b"application/json"),
        (b"*/*", b"application/json"),
        (b"application/json", b"application/json"),
        (BROWSER, b"text/html; charset=utf-8"),
        (b"TEXT/HTML", b"text/html; charset=utf-8"),
    ],
)
def test_json_unless_a_browser_asks(accept: bytes | None, content_type: bytes) -> None:
    assert index(["/users"], accept)[0] == content_type


def test_the_page_escapes_every_prefix() -> None:
    _, body = index(['/a"><script>alert(1)</script>', "/b&c"], BROWSER)
    items = body.decode().split("<ul>")[1].split("</ul>")[0]
    assert items == (
        '<li><a href="/a&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;/">'
        "/a&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;</a></li>"
        '<li><a href="/b&amp;c/">/b&amp;c</a></li>'
    )


def options(
    fallback: tuple[str, int] | None = None, prefixes: tuple[str, ...] = ("/users", "/orders")
) -> GatewayOptions:
    routes = tuple(RouteSpec(p, (("127.0.0.1", 9),)) for p in prefixes)
    return GatewayOptions(GatewaySettings(), routes, fallback, "cdn")


async def call(
    app: Any, path: str, method: str = "GET", accept: bytes | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    headers = [(b"host", b"gateway")] + ([(b"accept", accept)] if accept else [])
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


async def test_root_lists_the_routes_as_json() -> None:
    status, headers, body = await call(create(options()), "/")
    assert (status, headers[b"content-type"]) == (200, b"application/json")
    assert json.loads(body) == {"prefixes": ["/orders", "/users"]}
    assert headers[b"vary"] == b"Accept"


async def test_root_is_a_page_for_a_browser() -> None:
    status, headers, body = await call(create(options()), "/", accept=BROWSER)
    assert (status, headers[b"content-type"]) == (200, b"text/html; charset=utf-8")
    assert b'<a href="/orders/">/orders</a>' in body and b'<a href="/users/">/users</a>' in body


async def test_other_paths_and_methods_keep_the_404() -> None:
    app = create(options())
    assert (await call(app, "/nowhere"))[0] == 404
    assert (await call(app, "/", method="POST"))[0] == 404


async def test_a_fallback_claims_the_root() -> None:
    status, _, body = await call(create(options(fallback=("127.0.0.1", 9))), "/")
    assert status == 502 and b"prefixes" not in body  # proxied (and refused), not listed
