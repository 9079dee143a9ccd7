"""Upstream forms and per-route TLS options, parsed without I/O: every malformed form is one line naming it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trustme

from qkhyper.config.model import RouteSpec, UpstreamSettings, UpstreamTlsSpec
from qkhyper.config.targets import Target, parse_any, parse_api_target
from qkhyper.errors import ConfigError, UsageError
from qkhyper.gateway.routes import check_tls_options, merge_routes, parse_upstream, table_routes

APPS = {"/users": 8001}


@pytest.mark.parametrize(
    ("text", "prefix", "target", "tls", "base"),
    [
        ("users=10.0.0.9", "/users", ("10.0.0.9", 8001), False, ""),  # the app's port
        ("users=10.0.0.9:9001", "/users", ("10.0.0.9", 9001), False, ""),
        ("users:10.0.0.9", "/users", ("10.0.0.9", 8001), False, ""),
        ("users:10.0.0.9:9001", "/users", ("10.0.0.9", 9001), False, ""),
        ("/api/v1=backend.local:8080", "/api/v1", ("backend.local", 8080), False, ""),
        ("users=[::1]:9001", "/users", ("::1", 9001), False, ""),
        ("users:[::1]", "/users", ("::1", 8001), False, ""),
        ("users=http://h", "/users", ("h", 80), False, ""),  # a URL takes its scheme's port, not the app's
        ("users=https://h", "/users", ("h", 443), True, ""),
        ("users=https://h:8443/", "/users", ("h", 8443), True, ""),
        ("users=https://h:8443/v1", "/users", ("h", 8443), True, "/v1"),
        ("users=https://h/v1/", "/users", ("h", 443), True, "/v1"),
        ("users=http://[::1]:8080/a/b", "/users", ("::1", 8080), False, "/a/b"),
        ("users=HTTPS://H.example", "/users", ("h.example", 443), True, ""),
        (" users = h:1 ", "/users", ("h", 1), False, ""),
    ],
)
def test_upstream_forms(text: str, prefix: str, target: tuple[str, int], tls: bool, base: str) -> None:
    route = parse_upstream(text, APPS)
    assert (route.prefix, route.targets, route.tls, route.base) == (prefix, (target,), tls, base)
    assert route.url == ("://" in text)
    assert route.sends_target_host == tls  # the default: the target's name for https only


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "probe:127.0.0.1:99999",
            "--upstream 'probe:127.0.0.1:99999': '127.0.0.1:99999': port 99999 is outside 1-65535",
        ),
        ("users=h:0", "--upstream 'users=h:0': 'h:0': port 0 is outside 1-65535"),
        ("users=h:-1", "--upstream 'users=h:-1': 'h:-1': port '-1' is not a number"),
        ("users=h:http", "--upstream 'users=h:http': 'h:http': port 'http' is not a number"),
        ("users=h:١٢", "--upstream 'users=h:١٢': 'h:١٢': port '١٢' is not a number"),
        ("other=10.0.0.1", "--upstream 'other=10.0.0.1': '10.0.0.1' has no port and no app has the prefix /other"),
        ("nonsense", "--upstream 'nonsense' must look like PREFIX=HOST[:PORT], PREFIX:HOST[:PORT] or PREFIX="),
        ("users=", "--upstream 'users=' must look like"),
        ("users:", "--upstream 'users:' must look like"),
        ("=h:1", "--upstream '=h:1' must look like"),
        (":1.2.3.4:80", "--upstream ':1.2.3.4:80' must look like"),
        ("../x=h:1", "--upstream '../x=h:1' '../x' must be one or more URL path segments"),
        ("users=h h:1", "--upstream 'users=h h:1': 'h h:1' must look like HOST:PORT"),
        (
            "users=ftp://h",
            "--upstream 'users=ftp://h': 'ftp://h' must look like http(s)://HOST[:PORT][/base] (scheme ftp)",
        ),
        ("users=https://", "--upstream 'users=https://': 'https://' has no valid host"),
        (
            "users=https://h:99999/v1",
            "--upstream 'users=https://h:99999/v1': 'https://h:99999/v1': port 99999 is outside",
        ),
        ("users=https://h:x", "--upstream 'users=https://h:x': 'https://h:x': port 'x' is not a number"),
        ("users=https://u:p@h", "credentials in the URL are not supported"),
        ("users=https://h/v1?x=1", "a target takes no query or fragment"),
        ("users=https://h/v1#f", "a target takes no query or fragment"),
        ("users=https://h/a b", "'/a b' is not a usable base path"),
        ("users:https://h", "--upstream 'users:https://h': write a URL target as users=https://h"),
    ],
)
def test_malformed_upstreams_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_upstream(text, APPS)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("h:1", Target("h", 1)),
        ("[fe80::1]:2", Target("fe80::1", 2)),
        ("http://h/v1", Target("h", 80, False, "/v1", True)),
        ("https://[::1]", Target("::1", 443, True, "", True)),
        ("https://h:8443/", Target("h", 8443, True, "", True)),
    ],
)
def test_table_targets(text: str, target: Target) -> None:
    assert parse_any(text, None, "where") == target


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("https://api.example/v2", Target("api.example", 443, True, "/v2", True)),
        ("http://127.0.0.1:8000", Target("127.0.0.1", 8000, False, "", True)),
    ],
)
def test_api_targets(text: str, target: Target) -> None:
    assert parse_api_target(text, "--api-target") == target


@pytest.mark.parametrize("text", ["127.0.0.1:8000", "ws://h", "https://h:0", "https://h?x"])
def test_bad_api_targets_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="^" + re.escape(f"--api-target: {text!r}")):
        parse_api_target(text, "--api-target")


def test_table_entries_take_url_targets_and_tls_options(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(trustme.CA().cert_pem.bytes())
    upstreams = {
        "/pay": UpstreamSettings(["https://pay.example/v1", "https://pay2.example:8443/v1"], ca_certs="ca.pem"),
        "/plain": UpstreamSettings(["h:1"], rewrite_host=True),
        "/insecure": UpstreamSettings(["https://h"], tls_verify=False, rewrite_host=False),
    }
    pay, plain, insecure = table_routes(upstreams, tmp_path)
    assert pay.targets == (("pay.example", 443), ("pay2.example", 8443)) and pay.base == "/v1"
    assert pay.tls and pay.tls_options == UpstreamTlsSpec(True, str(tmp_path / "ca.pem")) and pay.sends_target_host
    assert not plain.tls and plain.sends_target_host  # rewrite_host set
    assert insecure.tls and not insecure.tls_options.verify and not insecure.sends_target_host
    assert insecure.describe() == "/insecure -> https://h:443 (certificate not verified)"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            UpstreamSettings(["https://a/v1", "http://b/v1"]),
            "[qkhyper.gateway].upstreams '/x': all targets of a route need the same scheme and base path",
        ),
        (UpstreamSettings(["https://a/v1", "https://b/v2"]), "need the same scheme and base path"),
        (UpstreamSettings(["h:99999"]), "[qkhyper.gateway].upstreams '/x': 'h:99999': port 99999 is outside 1-65535"),
        (
            UpstreamSettings(["https://h"], ca_certs="nope.pem"),
            "[qkhyper.gateway].upstreams '/x'.ca_certs: {d}/nope.pem does not exist",
        ),
        (UpstreamSettings(["https://h"], ca_certs="junk.pem"), "ca_certs: {d}/junk.pem holds no PEM certificate"),
    ],
)
def test_table_mistakes_are_one_line(tmp_path: Path, entry: UpstreamSettings, message: str) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError) as info:
        table_routes({"/x": entry}, tmp_path)
    assert message.format(d=tmp_path) in str(info.value) and "\n" not in str(info.value)


def test_options_entry_sets_the_tls_of_the_route_an_upstream_flag_moves(tmp_path: Path) -> None:
    """`--upstream users=https://...` with `ca_certs` under `[qkhyper.gateway.upstreams."/users"]`."""
    (tmp_path / "ca.pem").write_bytes(trustme.CA().cert_pem.bytes())
    app = RouteSpec("/users", (("127.0.0.1", 8001),), source="app users")
    table = table_routes({"/users": UpstreamSettings(ca_certs="ca.pem", rewrite_host=False)}, tmp_path)
    cli = [parse_upstream("users=https://localhost:9443/base", {})]
    (route,) = merge_routes([app], table, cli)
    assert route.targets == (("localhost", 9443),) and route.tls and route.base == "/base"
    assert route.tls_options.ca_certs == str(tmp_path / "ca.pem") and not route.sends_target_host
    check_tls_options([route])
    (alone,) = merge_routes([], table, cli)  # no app with the prefix: the options wait for the flag's route
    assert alone.tls_options == route.tls_options and alone.targets == route.targets


def test_tls_options_for_plain_targets_are_refused() -> None:
    route = RouteSpec("/users", (("h", 1),), source="upstreams", tls_options=UpstreamTlsSpec(False))
    with pytest.raises(ConfigError, match=r"upstreams '/users': tls_verify and ca_certs apply to https:// targets"):
        check_tls_options([route])


def test_per_route_switches_of_the_older_gateway_win_over_the_gateways() -> None:
    """EXTRA_PROXY's per-route add_slashes, fastapi_redirect, redirect_cache and add_forwarded_host."""
    from qkhyper.config.model import GatewaySettings

    gateway = GatewaySettings(add_slashes=False, fastapi_redirect=True, redirect_cache=True)
    app = RouteSpec("/users", (("127.0.0.1", 8001),), source="app users")
    options = UpstreamSettings(add_slashes=True, redirect_cache=False, add_forwarded_host=False)
    own = UpstreamSettings(targets=["http://10.0.0.9:9000/v2"], fastapi_redirect=False)
    table = table_routes({"/users": options, "/billing": own})
    moved = parse_upstream("users=10.0.0.5:9001", APPS)
    routes = {r.prefix: r for r in merge_routes([app], table, [moved])}
    users, billing = routes["/users"], routes["/billing"]
    assert users.targets == (("10.0.0.5", 9001),)  # the flag moved it, the options entry still applies
    switches = ("add_slashes", "fastapi_redirect", "redirect_cache", "add_forwarded_host")
    assert [users.switch(name, gateway) for name in switches] == [True, True, False, False]
    assert [billing.switch(name, gateway) for name in switches] == [False, False, True, True]
    with pytest.raises(KeyError):
        users.switch("rewrite_host", gateway)
