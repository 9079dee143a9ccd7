"""The proxy's header rules, without sockets."""

from __future__ import annotations

import pytest

from qkhyper.proxy.pool import Upstreams
from qkhyper.proxy.protocol import BadRequest, request_head, response_headers, rewrite_location, upstream_target


def scope(*headers: tuple[bytes, bytes], method: str = "GET", scheme: str = "http") -> dict[str, object]:
    return {"method": method, "scheme": scheme, "client": ("198.51.100.2", 5555), "headers": list(headers)}


def test_request_head_drops_hop_by_hop_and_adds_forwarded() -> None:
    head = request_head(
        scope(
            (b"host", b"gw.example"),
            (b"connection", b"keep-alive, x-private"),
            (b"x-private", b"secret"),
            (b"keep-alive", b"300"),
            (b"te", b"trailers"),
            (b"upgrade", b"h2c"),
            (b"proxy-authorization", b"Basic x"),
            (b"x-forwarded-for", b"203.0.113.1"),
            (b"x-forwarded-prefix", b"/spoofed"),
            (b"x-forwarded-host", b"evil"),
            (b"x-forwarded-proto", b"https"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
        ),
        b"/x?y=1",
        "/users",
        b"fallback-host",
    )
    assert head.headers == [
        (b"host", b"gw.example"),
        (b"cookie", b"a=1"),
        (b"cookie", b"b=2"),
        (b"x-forwarded-for", b"203.0.113.1, 198.51.100.2"),
        (b"x-forwarded-proto", b"http"),
        (b"x-forwarded-host", b"gw.example"),
        (b"x-forwarded-prefix", b"/users"),
    ]
    assert (head.method, head.target, head.length, head.chunked) == (b"GET", b"/x?y=1", 0, False)


def test_framing_is_the_proxys_own() -> None:
    assert request_head(scope((b"content-length", b"007"), method="POST"), b"/", "", b"h").headers[-1] == (
        b"content-length",
        b"7",
    )
    chunked = request_head(scope((b"transfer-encoding", b"chunked"), method="POST"), b"/", "", b"h")
    assert chunked.chunked and chunked.length is None and chunked.headers[-1] == (b"transfer-encoding", b"chunked")
    assert request_head(scope(), b"/", "", b"h").headers[0] == (b"host", b"h")


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-length", b"3"), (b"transfer-encoding", b"chunked")],
        [(b"content-length", b"3"), (b"content-length", b"4")],
        [(b"content-length", b"-1")],
        [(b"content-length", b"1_0")],
        [(b"content-length", "١".encode())],
    ],
)
def test_bad_framing_is_rejected(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(BadRequest):
        request_head(scope(*headers, method="POST"), b"/", "", b"h")


def test_websocket_scheme_is_forwarded_as_http() -> None:
    head = request_head(scope(scheme="wss"), b"/", "", b"h")
    assert (b"x-forwarded-proto", b"https") in head.headers


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
        (b"http://127.0.0.1:8001/items/", b"https://gw.example/users/items/"),
        (b"http://127.0.0.1:8001/a?b=c#d", b"https://gw.example/users/a?b=c#d"),
        (b"http://127.0.0.1:9999/items/", b"http://127.0.0.1:9999/items/"),
        (b"https://elsewhere.example/x", b"https://elsewhere.example/x"),
        (b"/relative", b"/relative"),
        (b"http://[::1", b"http://[::1"),
    ],
)
def test_rewrite_location(location: bytes, expected: bytes) -> None:
    assert rewrite_location(location, ("127.0.0.1", 8001), b"https://gw.example", "/users") == expected


def test_upstream_target_keeps_raw_bytes() -> None:
    assert upstream_target(b"/users/a%2Fb", b"x=%ff", len(b"/users")) == b"/a%2Fb?x=%ff"
    assert upstream_target(b"/users", b"", len(b"/users")) == b"/"


def test_round_robin_prefers_healthy_targets() -> None:
    upstreams = Upstreams([("a", 1), ("b", 2), ("c", 3)])
    assert [upstreams.order(0)[0] for _ in range(3)] == [("a", 1), ("b", 2), ("c", 3)]
    upstreams.mark_down(("b", 2), now=100)
    assert upstreams.order(105) == [("a", 1), ("c", 3), ("b", 2)]
    assert upstreams.order(111)[0] == ("b", 2)  # back after 10 s
