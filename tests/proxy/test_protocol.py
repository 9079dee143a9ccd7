"""The proxy's header rules, without sockets."""

from __future__ import annotations

import re

import pytest

from qkhyper.asgi.types import Scope
from qkhyper.proxy.errors import BadRequest
from qkhyper.proxy.pool import Upstreams
from qkhyper.proxy.protocol import (
    REQUEST_ID_MAX,
    accepted_request_id,
    choose_request_id,
    log_request_id,
    log_target,
    match_prefix,
    request_head,
    response_headers,
    rewrite_location,
    slashed,
    upstream_target,
    websocket_headers,
)


def scope(*headers: tuple[bytes, bytes], method: str = "GET", scheme: str = "http", version: str = "1.1") -> Scope:
    return {
        "method": method,
        "scheme": scheme,
        "http_version": version,
        "client": ("198.51.100.2", 5555),
        "server": ("10.0.0.1", 8000),
        "headers": list(headers),
    }


HOST = (b"host", b"gw.example")
SPOOFED = [
    (b"x-forwarded-for", b"203.0.113.1"),
    (b"x-forwarded-prefix", b"/spoofed"),
    (b"x-forwarded-host", b"evil.example"),
    (b"x-forwarded-proto", b"https"),
]
FORWARDED = [
    (b"x-forwarded-for", b"203.0.113.1, 198.51.100.2"),
    (b"x-forwarded-proto", b"http"),
    (b"x-forwarded-host", b"gw.example"),
    (b"x-forwarded-prefix", b"/users"),
]


def test_request_head_drops_hop_by_hop_and_adds_forwarded() -> None:
    head = request_head(
        scope(
            (b"connection", b"keep-alive, x-private"),
            (b"x-private", b"secret"),
            (b"keep-alive", b"300"),
            (b"te", b"trailers"),
            (b"upgrade", b"h2c"),
            (b"proxy-authorization", b"Basic x"),
            *SPOOFED,
            (b"cookie", b"a=1"),
            HOST,
            (b"cookie", b"b=2"),
        ),
        b"/x?y=1",
        "/users",
    )
    assert head.headers == [HOST, (b"cookie", b"a=1"), (b"cookie", b"b=2"), *FORWARDED]
    assert (head.method, head.target, head.length, head.chunked) == (b"GET", b"/x?y=1", 0, False)
    assert head.idempotent and not request_head(scope(HOST, method="POST"), b"/", "").idempotent


def test_websocket_handshake_gets_the_same_forwarding_policy() -> None:
    """A client cannot spoof X-Forwarded-* on a WebSocket either (it once could)."""
    ws = scope(
        HOST,
        *SPOOFED,
        (b"sec-websocket-key", b"abc"),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-protocol", b"v1"),
        (b"sec-websocket-extensions", b"permessage-deflate"),
        (b"connection", b"upgrade"),
        (b"upgrade", b"websocket"),
        (b"origin", b"https://app.example"),
        scheme="ws",
    )
    host, headers = websocket_headers(ws, "/users")
    assert (host, headers) == (b"gw.example", [(b"origin", b"https://app.example"), *FORWARDED])


@pytest.mark.parametrize(
    ("headers", "version", "problem"),
    [
        ([HOST, (b"host", b"other.example")], "1.1", "more than one Host"),
        ([HOST, HOST], "1.1", "more than one Host"),
        ([], "1.1", "no Host"),
    ],
)
def test_host_must_be_there_once(headers: list[tuple[bytes, bytes]], version: str, problem: str) -> None:
    with pytest.raises(BadRequest, match=problem):
        request_head(scope(*headers, version=version), b"/", "")
    with pytest.raises(BadRequest, match=problem):
        websocket_headers(scope(*headers, version=version, scheme="ws"), "")


def test_http_1_0_without_host_gets_the_servers_address() -> None:
    assert request_head(scope(version="1.0"), b"/", "").headers[0] == (b"host", b"10.0.0.1:8000")


def test_framing_is_the_proxys_own() -> None:
    assert request_head(scope(HOST, (b"content-length", b"007"), method="POST"), b"/", "").headers[-1] == (
        b"content-length",
        b"7",
    )
    chunked = request_head(scope(HOST, (b"transfer-encoding", b"chunked"), method="POST"), b"/", "")
    assert chunked.chunked and chunked.length is None and chunked.headers[-1] == (b"transfer-encoding", b"chunked")
    assert request_head(scope(HOST), b"/", "").headers[-1] == (b"x-forwarded-host", b"gw.example")


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-length", b"3"), (b"transfer-encoding", b"chunked")],
        [(b"transfer-encoding", b"chunked"), (b"content-length", b"3")],
        [(b"content-length", b"3"), (b"content-length", b"4")],
        [(b"content-length", b"-1")],
        [(b"content-length", b"1_0")],
        [(b"content-length", "١".encode())],
        [(b"content-length", b"9" * 19)],
    ],
)
def test_bad_framing_is_rejected(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(BadRequest):
        request_head(scope(HOST, *headers, method="POST"), b"/", "")


def test_repeated_equal_content_length_is_one() -> None:
    head = request_head(scope(HOST, (b"content-length", b"3"), (b"content-length", b"3"), method="POST"), b"/", "")
    assert head.length == 3 and head.headers.count((b"content-length", b"3")) == 1


def test_websocket_scheme_is_forwarded_as_http() -> None:
    head = request_head(scope(HOST, scheme="wss"), b"/", "")
    assert (b"x-forwarded-proto", b"https") in head.headers


@pytest.mark.parametrize(
    ("raw", "prefix", "matched"),
    [
        (b"/api", b"/api", 4),
        (b"/api/", b"/api", 4),
        (b"/api/x", b"/api", 4),
        (b"/apix", b"/api", None),
        (b"/ap", b"/api", None),
        (b"/", b"/api", None),
        (b"/%61pi/users/1", b"/api", 6),
        (b"/%61%70%69", b"/api", 10),
        (b"/%61pix/1", b"/api", None),
        (b"/api%2Fx", b"/api", None),  # an encoded slash is not a segment boundary
        (b"/%41PI/x", b"/api", None),  # paths are case-sensitive
        (b"/api/v%32/x", b"/api/v2", 9),
        (b"/api/v2x", b"/api/v2", None),
        (b"/api", b"/api/v2", None),
        (b"/%61pi", b"/api/v2", None),
        (b"x/api", b"/api", None),
    ],
)
def test_match_prefix(raw: bytes, prefix: bytes, matched: int | None) -> None:
    assert match_prefix(raw, prefix) == matched


def test_response_headers() -> None:
    head = response_headers(
        [
            (b"content-type", b"text/event-stream"),
            (b"connection", b"x-hop"),
            (b"x-hop", b"1"),
            (b"transfer-encoding", b"chunked"),
            (b"date", b"old"),
            (b"server", b"uvicorn"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
            (b"location", b"/next"),
        ]
    )
    assert head.headers == [
        (b"content-type", b"text/event-stream"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"location", b"/next"),
        (b"x-accel-buffering", b"no"),
    ]
    assert head.event_stream and head.location == 3 and head.length is None and not head.conflicting
    assert response_headers([(b"content-length", b"5"), (b"transfer-encoding", b"chunked")]).conflicting
    assert response_headers([(b"content-length", b"12")]).length == 12


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        # At the upstream itself: the client's origin, under the prefix.
        (b"http://127.0.0.1:8001/items/", b"https://gw.example/users/items/"),
        (b"http://127.0.0.1:8001/a?b=c#d", b"https://gw.example/users/a?b=c#d"),
        (b"http://127.0.0.1:8001", b"https://gw.example/users/"),
        # At the host the client used (a plain uvicorn app saw the kept Host, ignored X-Forwarded-Prefix).
        (b"http://gw.example/items/", b"https://gw.example/users/items/"),
        (b"https://GW.example/items/?q=/x", b"https://gw.example/users/items/?q=/x"),
        # Path-absolute: stays relative, gets the prefix.
        (b"/items/", b"/users/items/"),
        (b"/items/?next=/orders", b"/users/items/?next=/orders"),
        # Already under a route's prefix (whole segments): the app knew.
        (b"/users/items/", b"/users/items/"),
        (b"/users", b"/users"),
        (b"/orders/1", b"/orders/1"),
        (b"http://gw.example/orders/1", b"https://gw.example/orders/1"),
        (b"/usersx/1", b"/users/usersx/1"),
        # Left alone: other sites, path-relative references, scheme-relative ones elsewhere, garbage.
        (b"http://127.0.0.1:9999/items/", b"http://127.0.0.1:9999/items/"),
        (b"https://elsewhere.example/x", b"https://elsewhere.example/x"),
        (b"//evil.example/x", b"//evil.example/x"),
        (b"items/", b"items/"),
        (b"http://[::1", b"http://[::1"),
    ],
)
def test_rewrite_location(location: bytes, expected: bytes) -> None:
    upstream, public = ("127.0.0.1", 8001), b"https://gw.example"
    assert rewrite_location(location, upstream, public, "/users", ["/users", "/orders"]) == expected


@pytest.mark.parametrize(
    ("prefix", "location", "expected"),
    [
        ("", b"/items/", b"/items/"),  # the fallback route, or an --aio app that sees the full path
        ("", b"http://127.0.0.1:8001/users/x", b"https://gw.example/users/x"),
        ("/", b"/items/", b"/items/"),
    ],
)
def test_rewrite_location_without_a_prefix_to_add(prefix: str, location: bytes, expected: bytes) -> None:
    assert rewrite_location(location, ("127.0.0.1", 8001), b"https://gw.example", prefix) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (b"/items", b"/items/"),
        (b"/items/", b"/items/"),
        (b"/", b"/"),
        (b"/a/b", b"/a/b/"),
        (b"/app.js", b"/app.js"),  # a file
        (b"/v1.2", b"/v1.2"),  # a dotted last segment is left alone
        (b"/v1.2/items", b"/v1.2/items/"),  # only the last segment counts
        (b"/a%2Fb", b"/a%2Fb/"),  # raw bytes, never decoded
    ],
)
def test_add_slashes_appends_one_before_the_query(path: bytes, expected: bytes) -> None:
    assert slashed(path) == expected
    assert upstream_target(slashed(path), b"next=/x") == expected + b"?next=/x"


def test_upstream_target_keeps_raw_bytes() -> None:
    assert upstream_target(b"/a%2Fb", b"x=%ff") == b"/a%2Fb?x=%ff"
    assert upstream_target(b"", b"") == b"/"
    assert upstream_target(b"x", b"q") == b"/x?q"


def test_round_robin_prefers_healthy_targets() -> None:
    upstreams = Upstreams([("a", 1), ("b", 2), ("c", 3)])
    assert [upstreams.order(0)[0] for _ in range(3)] == [("a", 1), ("b", 2), ("c", 3)]
    upstreams.mark_down(("b", 2), now=100)
    assert upstreams.order(105) == [("a", 1), ("c", 3), ("b", 2)]
    assert upstreams.order(111)[0] == ("b", 2)  # back after 10 s


@pytest.mark.parametrize(
    ("raw", "path", "logged"),
    [
        (b"/up/a%0aFAKE", "/up/a\nFAKE", "/up/a%0aFAKE"),  # the decoded path would break the line
        (b"/up/\xc3\xa9", "/up/\u00e9", "/up/\\xc3\\xa9"),
        (None, "/up/a\nb", "/up/a%0Ab"),  # no raw_path: re-quoted
    ],
)
def test_log_lines_get_the_path_as_sent_and_printable(raw: bytes | None, path: str, logged: str) -> None:
    the_scope: Scope = {"path": path}
    if raw is not None:
        the_scope["raw_path"] = raw
    assert log_target(the_scope) == logged
    assert "\n" not in log_target(the_scope)


# --- request IDs ---------------------------------------------------------------------------------

RID = (b"x-request-id", b"req-1")
TRACE = [
    (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    (b"tracestate", b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
]


@pytest.mark.parametrize(
    ("values", "kept"),
    [
        ([b"req-1"], b"req-1"),
        ([b"4bf92f3577b34da6a3ce929d0e0e4736"], b"4bf92f3577b34da6a3ce929d0e0e4736"),  # nginx's $request_id
        ([b"0f8fad5b-d9cb-469f-a165-70867728950e"], b"0f8fad5b-d9cb-469f-a165-70867728950e"),  # a UUID
        ([b"svc.a:host@zone/7+AbC=="], b"svc.a:host@zone/7+AbC=="),  # every allowed punctuation mark
        ([b"a" * REQUEST_ID_MAX], b"a" * REQUEST_ID_MAX),
        ([b"a" * (REQUEST_ID_MAX + 1)], None),  # too long: replaced, never cut
        ([b""], None),
        ([b"a b"], None),
        ([b"a,b"], None),  # a list joined by a proxy: which one?
        ([b"a\nFAKE log line"], None),
        ([b"a\r\nSet-Cookie: x=1"], None),
        ([b"ok\x00"], None),
        ([b"ok\n"], None),  # `$` would match before a final newline; fullmatch does not
        ([b'"quoted"'], None),
        ([b"<script>"], None),
        ([b"%0a"], None),
        ([b"a;b"], None),
        ([b"a\\b"], None),
        (["é".encode()], None),
        ([b"\xff"], None),
        ([b"same", b"same"], None),  # two headers: ambiguous, whatever they say
        ([b"first", b"second"], None),
        ([b"bad id", b"good"], None),
        ([], None),
    ],
)
def test_which_client_request_ids_are_kept(values: list[bytes], kept: bytes | None) -> None:
    headers = [HOST, *((b"x-request-id", v) for v in values), (b"x-other", b"1")]
    assert accepted_request_id(headers) == kept
    chosen = choose_request_id(headers)
    if kept is None:
        assert re.fullmatch(rb"[0-9a-f]{32}", chosen), chosen
    else:
        assert chosen == kept


def test_new_request_ids_differ() -> None:
    assert len({choose_request_id([]) for _ in range(100)}) == 100


def test_request_id_replaces_the_clients_upstream_and_trace_context_passes() -> None:
    head = request_head(scope(HOST, (b"x-request-id", b"spoof ed"), *TRACE, *SPOOFED), b"/", "/users", b"chosen")
    assert head.headers == [HOST, *TRACE, *FORWARDED, (b"x-request-id", b"chosen")]
    _, headers = websocket_headers(scope(HOST, RID, *TRACE, *SPOOFED, scheme="ws"), "/users", b"req-1")
    assert headers == [*TRACE, *FORWARDED, RID]


def test_request_ids_off_leave_the_header_alone() -> None:
    """`request_id = false`: X-Request-ID crosses both ways like any other end-to-end header."""
    head = request_head(scope(HOST, (b"x-request-id", b"a b"), (b"x-request-id", b"c"), *TRACE), b"/", "")
    assert head.headers[1:5] == [(b"x-request-id", b"a b"), (b"x-request-id", b"c"), *TRACE]
    _, headers = websocket_headers(scope(HOST, RID, scheme="ws"), "")
    assert headers[0] == RID
    assert response_headers([(b"x-request-id", b"up")]).headers == [(b"x-request-id", b"up")]


def test_the_client_gets_the_proxys_request_id_once() -> None:
    head = response_headers(
        [
            (b"x-request-id", b"the-upstreams"),
            (b"location", b"/next"),
            (b"x-request-id", b"another"),
            (b"connection", b"x-request-id, x-hop"),
            (b"x-hop", b"1"),
            *TRACE,
        ],
        b"req-1",
    )
    assert head.headers == [(b"location", b"/next"), *TRACE, RID]
    assert head.location == 0


def test_failure_log_lines_end_with_the_request_id() -> None:
    assert log_request_id(b"req-1") == " request_id=req-1"
    assert log_request_id(None) == ""
