"""https:// routes, in-process: base paths, Host and SNI, TLS failures as 502 JSON, the pool keyed by TLS."""

from __future__ import annotations

import ssl

import h11
import pytest

from qkhyper.config.model import UpstreamTlsSpec
from qkhyper.gateway.app import follow_fastapi_redirect
from qkhyper.proxy.core import host_header
from qkhyper.proxy.mock import HANG, MockStream
from qkhyper.proxy.protocol import rewrite_location
from tests.proxy.harness import (
    TARGET,
    Client,
    assert_no_leak,
    call,
    http_scope,
    make_core,
    request_line,
    response,
    route,
    settings,
    ws_accept,
    ws_scope,
)
from tests.proxy.test_websocket import Leaving

pytestmark = pytest.mark.anyio

TLS = UpstreamTlsSpec()


def hostname_mismatch() -> ssl.SSLCertVerificationError:
    """What the ssl module raises for a certificate of another name (as asyncio and anyio pass it on)."""
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    exc.reason = "CERTIFICATE_VERIFY_FAILED"
    exc.verify_message = "Hostname mismatch, certificate is not valid for 'up.test'."
    return exc


@pytest.mark.parametrize(
    ("path", "query", "line"),
    [
        ("/up/items", b"", b"GET /v1/items HTTP/1.1"),
        ("/up/items/", b"a=1&b=2", b"GET /v1/items/?a=1&b=2 HTTP/1.1"),
        ("/up", b"", b"GET /v1 HTTP/1.1"),
        ("/up", b"x=1", b"GET /v1?x=1 HTTP/1.1"),
        ("/up/", b"", b"GET /v1/ HTTP/1.1"),
    ],
)
async def test_base_path_goes_in_front_of_the_upstream_path(path: str, query: bytes, line: bytes) -> None:
    stream = MockStream([response()])
    core, backend = make_core([stream])
    client = Client()
    await call(core, http_scope(path, query=query), client, route(core, base="/v1"))
    assert client.status == 200
    assert request_line(stream.written) == line
    assert b"x-forwarded-prefix: /up\r\n" in stream.written
    assert_no_leak(core, backend)


async def test_https_route_connects_with_its_context_and_sends_the_targets_name() -> None:
    stream = MockStream([response(), response()])
    core, backend = make_core([stream])
    the_route = route(core, targets=[("up.test", 443)], tls=TLS, rewrite_host=True)
    for _ in range(2):
        await call(core, http_scope(), Client(), the_route)
    assert backend.connects == [("up.test", 443)]  # the host: AutoBackend's SNI and certificate name
    assert backend.tls == [the_route.tls] and isinstance(the_route.tls, ssl.SSLContext)
    assert stream.written.count(b"host: up.test\r\n") == 2  # port 443 left out, on the reused connection too
    assert b"x-forwarded-host: gw.test\r\n" in stream.written  # the client's, still told
    assert_no_leak(core, backend)


async def test_without_rewrite_host_the_clients_host_goes_on() -> None:
    stream = MockStream([response()])
    core, backend = make_core([stream])
    await call(core, http_scope(), Client(), route(core, tls=TLS))
    assert stream.written.startswith(b"GET /x HTTP/1.1\r\nhost: gw.test\r\n")
    assert backend.tls[0] is not None


async def test_each_target_is_asked_for_by_its_own_name() -> None:
    """Two targets of one route: the one that refuses is skipped, the other gets its own Host."""
    stream = MockStream([response()])
    core, backend = make_core([ConnectionRefusedError("no"), stream])
    the_route = route(core, targets=[("a.test", 8443), ("b.test", 8443)], tls=TLS, rewrite_host=True)
    client = Client()
    await call(core, http_scope(), client, the_route)
    assert client.status == 200 and backend.connects == [("a.test", 8443), ("b.test", 8443)]
    assert b"host: b.test:8443\r\n" in stream.written


async def test_failed_handshake_is_a_502_naming_the_verification_failure() -> None:
    core, backend = make_core([hostname_mismatch()])
    client = Client()
    await call(core, http_scope(), client, route(core, tls=TLS))
    assert client.status == 502
    assert client.json == {
        "error": "bad gateway",
        "route": "/up",
        "reason": "upstream TLS handshake failed",
        "detail": "upstream TLS: certificate verify failed: Hostname mismatch, certificate is not valid for 'up.test'.",
        "request_id": client.json["request_id"],
    }
    assert_no_leak(core, backend)


async def test_a_failed_handshake_tries_the_next_target() -> None:
    stream = MockStream([response()])
    core, backend = make_core([hostname_mismatch(), stream])
    client = Client()
    await call(core, http_scope(), client, route(core, targets=[("a.test", 443), ("b.test", 443)], tls=TLS))
    assert client.status == 200 and len(backend.connects) == 2


async def test_plain_http_on_the_other_end_is_named() -> None:
    exc = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    exc.reason = "WRONG_VERSION_NUMBER"
    core, _backend = make_core([exc])
    client = Client()
    await call(core, http_scope(), client, route(core, tls=TLS))
    assert client.status == 502
    assert client.json["detail"] == "upstream TLS: handshake failed: wrong version number (is it serving plain HTTP?)"


async def test_a_hanging_handshake_is_bounded_by_connect_timeout() -> None:
    core, _backend = make_core([HANG], settings(connect_timeout=2.0))
    client = Client()
    await call(core, http_scope(), client, route(core, tls=TLS))
    assert client.status == 504 and client.json["reason"] == "upstream did not accept a connection in time"


async def test_plain_and_tls_connections_to_one_target_never_mix() -> None:
    plain, secure = MockStream([response(), response()]), MockStream([response(), response()])
    core, backend = make_core([plain, secure])
    plain_route, tls_route = route(core), route(core, tls=TLS)
    for the_route in (plain_route, tls_route, plain_route, tls_route):
        await call(core, http_scope(), Client(), the_route)
    assert backend.connects == [TARGET, TARGET] and backend.tls == [None, tls_route.tls]
    assert plain.sends == 2 and secure.sends == 2  # each reused by its own kind only
    assert core.pool.idle_count(TARGET) == 1 and core.pool.idle_count(TARGET, tls_route.tls) == 1
    assert_no_leak(core, backend)


async def test_routes_that_check_alike_share_a_context_and_connections() -> None:
    core, _backend = make_core([])
    first, second = route(core, "/a", tls=TLS), route(core, "/b", tls=UpstreamTlsSpec())
    other = route(core, "/c", tls=UpstreamTlsSpec(verify=False))
    assert first.tls is second.tls and other.tls is not first.tls
    assert other.tls is not None and other.tls.verify_mode == ssl.CERT_NONE and not other.tls.check_hostname
    assert first.tls is not None and first.tls.verify_mode == ssl.CERT_REQUIRED and first.tls.check_hostname


async def test_websocket_to_an_https_target_goes_over_tls_with_the_targets_name() -> None:
    stream = MockStream([lambda written: ws_accept(written), HANG])
    core, backend = make_core([stream])
    the_route = route(core, targets=[("up.test", 443)], tls=TLS, base="/v1", rewrite_host=True)
    client = Leaving(wanted=0)
    await call(core, ws_scope("/up/ws"), client, the_route)
    assert client.sent[0]["type"] == "websocket.accept"
    assert backend.tls == [the_route.tls]
    assert stream.written.startswith(b"GET /v1/ws HTTP/1.1\r\n")
    assert b"Host: up.test\r\n" in stream.written


@pytest.mark.parametrize(
    ("target", "tls", "host"),
    [
        (("h", 443), True, b"h"),
        (("h", 80), True, b"h:80"),
        (("h", 80), False, b"h"),
        (("::1", 8443), True, b"[::1]:8443"),
        (("::1", 443), True, b"[::1]"),
    ],
)
def test_host_header(target: tuple[str, int], tls: bool, host: bytes) -> None:
    assert host_header(target, tls) == host


@pytest.mark.parametrize(
    ("location", "rewritten"),
    [
        (b"https://up.test/v1/items/", b"https://gw.test/up/items/"),
        (b"https://up.test/v1", b"https://gw.test/up/"),
        (b"https://up.test/v10/x", b"https://gw.test/up/v10/x"),  # not the base: a segment of its own
        (b"https://elsewhere/v1/x", b"https://elsewhere/v1/x"),
    ],
)
def test_location_of_the_upstream_loses_the_base(location: bytes, rewritten: bytes) -> None:
    assert rewrite_location(location, ("up.test", 443), b"https://gw.test", "/up", base=b"/v1") == rewritten


@pytest.mark.parametrize(
    ("location", "follow"),
    [
        (b"/v1/items/", b"/items/"),
        (b"https://up.test/v1/items/", b"/items/"),
        (b"/items/", b"/items/"),
        (b"/v1/x/", None),
    ],
)
async def test_fastapi_redirect_under_a_base_path(location: bytes, follow: bytes | None) -> None:
    core, _backend = make_core([])
    redirect = h11.Response(status_code=307, headers=[(b"location", location)])
    assert follow_fastapi_redirect(route(core, base="/v1"), b"/items", redirect) == follow
