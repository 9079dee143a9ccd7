"""Route table building and matching, without I/O."""

from __future__ import annotations

import pytest

from qkhyper.config.model import RouteSpec
from qkhyper.config.targets import parse_target
from qkhyper.errors import ConfigError
from qkhyper.gateway.app import RouteTable
from qkhyper.gateway.docs_fix import fix_docs_page, fix_openapi
from qkhyper.gateway.routes import merge_routes, parse_upstream
from qkhyper.proxy.forward import Route
from qkhyper.proxy.pool import Upstreams
from qkhyper.proxy.protocol import refusal


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

    def matched(path: bytes) -> tuple[str, int] | None:
        found = table.match(path)
        return None if found is None else (found[0].prefix, found[1])

    assert matched(b"/api/v2/x") == ("/api/v2", 7)
    assert matched(b"/api/v2") == ("/api/v2", 7)
    assert matched(b"/api/v20") == ("/api", 4)
    assert matched(b"/users") is None
    assert matched(b"/") is None
    # Segments are compared decoded, as the upstream reads them; the raw bytes after them go on.
    assert matched(b"/%61pi/users/1") == ("/api", 6)
    assert matched(b"/api/%76%32/x") == ("/api/v2", 11)
    assert matched(b"/API/x") is None
    assert matched(b"/%61pix") is None
    fallback = route("")
    assert RouteTable([route("/api")], fallback).match(b"/other") == (fallback, 0)


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
    assert (refusal({"method": "GET"}, path, 1) == "path not allowed") is bad


@pytest.mark.parametrize(
    ("method", "path", "why"),
    [
        ("CONNECT", b"/x", "target not allowed"),
        ("OPTIONS", b"*", "target not allowed"),
        ("GET", b"http://evil.example/x", "target not allowed"),
        ("GET", b"/x", None),
    ],
)
def test_targets_for_other_proxies_are_refused(method: str, path: bytes, why: str | None) -> None:
    assert refusal({"method": method}, path, 1) == why


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


@pytest.mark.parametrize(
    "body",
    [
        b'{"openapi": "3.1.0", "servers": 5}',  # was a TypeError (traceback, connection dropped)
        b'{"servers": "/x"}',
        b"[" * 100000 + b"]" * 100000,  # was a RecursionError
        b'{"a": ' * 5000 + b"1" + b"}" * 5000,  # parses in C, but too deep to dump again
        b"\xff\xfe not utf-8",
    ],
    ids=["servers-int", "servers-str", "deep-list", "deep-object", "not-utf8"],
)
def test_odd_openapi_bodies_pass_through_untouched(body: bytes) -> None:
    assert fix_openapi(body, "/users") == body


def test_openapi_servers_null_is_no_servers() -> None:
    assert fix_openapi(b'{"servers": null}', "/users") == b'{"servers": [{"url": "/users"}]}'


def test_upstreams_options_apply_to_an_apps_route_and_survive_a_move() -> None:
    from qkhyper.config.model import UpstreamSettings
    from qkhyper.gateway.routes import table_routes

    apps = [RouteSpec("/users", (("127.0.0.1", 8001),), source="app users")]
    table = table_routes({"users": UpstreamSettings(sse_idle_timeout=30.0), "/new": UpstreamSettings(["h:1"], 5.0)})
    merged = {r.prefix: r for r in merge_routes(apps, table, [])}
    assert merged["/users"].targets == (("127.0.0.1", 8001),) and merged["/users"].sse_idle_timeout == 30.0
    assert (merged["/new"].targets, merged["/new"].upstream_idle_timeout) == ((("h", 1),), 5.0)
    moved = merge_routes(apps, table, [parse_upstream("users:10.0.0.5:9000", {})])
    assert [(r.targets, r.sse_idle_timeout) for r in moved if r.prefix == "/users"] == [((("10.0.0.5", 9000),), 30.0)]
    with pytest.raises(ConfigError, match="'/ghost': no targets and no app with that prefix"):
        merge_routes(apps, table_routes({"/ghost": UpstreamSettings(upstream_idle_timeout=1.0)}), [])
