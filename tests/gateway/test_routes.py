"""Route table building and matching, without I/O."""

from __future__ import annotations

import pytest

from qkhyper.errors import ConfigError
from qkhyper.gateway.app import RouteTable, suspicious
from qkhyper.gateway.docs_fix import fix_docs_page, fix_openapi
from qkhyper.gateway.routes import RouteSpec, merge_routes, parse_target, parse_upstream
from qkhyper.proxy.forward import Route
from qkhyper.proxy.pool import Upstreams


@pytest.mark.parametrize(
    ("text", "prefix", "target"),
    [
        ("users:127.0.0.1:9001", "/users", ("127.0.0.1", 9001)),
        ("/users:10.0.0.2:80", "/users", ("10.0.0.2", 80)),
        ("api/v1:backend.local:8080", "/api/v1", ("backend.local", 8080)),
        ("users:[::1]:9001", "/users", ("::1", 9001)),
        ("users:10.0.0.9", "/users", ("10.0.0.9", 8001)),  # the app's own port
    ],
)
def test_parse_upstream(text: str, prefix: str, target: tuple[str, int]) -> None:
    route = parse_upstream(text, {"/users": 8001})
    assert (route.prefix, route.targets) == (prefix, (target,))


@pytest.mark.parametrize("text", ["nonsense", "users:", ":1.2.3.4:80", "other:10.0.0.1", "x:h:99999", "../x:h:1"])
def test_parse_upstream_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_upstream(text, {"/users": 8001})


def test_parse_target() -> None:
    assert parse_target("h:1", None, "x") == ("h", 1)
    with pytest.raises(ConfigError, match="must look like HOST:PORT"):
        parse_target("h", None, "fallback")


def test_merge_routes_moves_and_adds() -> None:
    apps = [RouteSpec("/users", (("127.0.0.1", 8001),)), RouteSpec("/orders", (("127.0.0.1", 8002),))]
    cli = [RouteSpec("/users", (("10.0.0.5", 9000),), source="--upstream"), RouteSpec("/new", (("h", 1),))]
    merged = {r.prefix: r.targets for r in merge_routes(apps, [], cli)}
    assert merged == {"/orders": (("127.0.0.1", 8002),), "/users": (("10.0.0.5", 9000),), "/new": (("h", 1),)}
    with pytest.raises(ConfigError, match="duplicate gateway prefix /x"):
        merge_routes([], [], [RouteSpec("/x", (("h", 1),)), RouteSpec("/x", (("h", 2),))])


def test_route_table_matches_whole_segments_longest_first() -> None:
    def route(prefix: str) -> Route:
        return Route(prefix, Upstreams([("h", 1)]))

    table = RouteTable([route("/api"), route("/api/v2"), route("/user")], None)
    assert table.match(b"/api/v2/x").prefix == "/api/v2"  # type: ignore[union-attr]
    assert table.match(b"/api/v2").prefix == "/api/v2"  # type: ignore[union-attr]
    assert table.match(b"/api/v20").prefix == "/api"  # type: ignore[union-attr]
    assert table.match(b"/users") is None
    assert table.match(b"/") is None
    fallback = route("")
    assert RouteTable([route("/api")], fallback).match(b"/other") is fallback


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (b"/users/x", False),
        (b"/users/%2e%2e/x", False),  # below the prefix part: the upstream's business
        (b"/..", True),
        (b"/%2E%2E/users", True),
        (b"/.", True),
        (b"/users%2Fadmin", True),
        (b"/users%5cadmin", True),
        (b"/users\\admin", True),
    ],
)
def test_suspicious_prefix_segments(path: bytes, bad: bool) -> None:
    assert suspicious(path, 1) is bad


def test_docs_fixes_touch_only_the_openapi_url_and_servers() -> None:
    page = b"<script>SwaggerUIBundle({url: '/openapi.json', dom_id: '#swagger-ui'})</script>"
    assert fix_docs_page(page, "/users") == page.replace(b"'/openapi.json'", b"'/users/openapi.json'")
    assert fix_docs_page(page.replace(b"/openapi", b"/users/openapi"), "/users").count(b"/users/users") == 0
    assert fix_openapi(b'{"openapi": "3.1.0", "paths": {}}', "/users") == (
        b'{"openapi": "3.1.0", "paths": {}, "servers": [{"url": "/users"}]}'
    )
    already = b'{"servers": [{"url": "/users"}]}'
    assert fix_openapi(already, "/users") == already
    assert fix_openapi(b"not json", "/users") == b"not json"
