"""The gateway in front of real upstreams: routing, forwarding rules, hygiene."""

from __future__ import annotations

import json
import signal

import httpx
import pytest

from tests.conftest import Qkhyper, free_port, get, run_cli
from tests.gateway.conftest import StackFactory, raw_request


def headers_of(body: dict[str, object]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in body["headers"]:  # type: ignore[union-attr]
        found.setdefault(name, []).append(value)
    return found


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_forwarding_rules(stack: StackFactory, backend: str) -> None:
    s = stack(("--backend", backend))
    response = httpx.get(
        f"{s.url}/up/echo?a=1&b=%20x&a=2",
        headers=[
            ("X-Forwarded-Prefix", "/evil"),
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Host", "evil.example"),
            ("Connection", "keep-alive, X-Private"),
            ("X-Private", "hop"),
            ("X-Multi", "one"),
            ("X-Multi", "two"),
            ("X-Latin", "caf\xe9".encode("latin-1")),
        ],
    )
    assert response.status_code == 200
    seen = response.json()
    got = headers_of(seen)
    assert (seen["route"], seen["root_path"], seen["query"]) == ("/echo", "/up", "a=1&b=%20x&a=2")
    assert got["x-forwarded-prefix"] == ["/up"]
    assert got["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    assert got["x-forwarded-proto"] == ["http"]
    assert got["x-forwarded-host"] == [f"127.0.0.1:{s.port}"]
    assert got["host"] == [f"127.0.0.1:{s.port}"]
    assert got["x-multi"] == ["one", "two"]
    assert got["x-latin"] == ["caf\xe9"]
    assert ("x-private" not in got and "connection" not in got) or got["connection"] != ["keep-alive, X-Private"]
    # Response: hop-by-hop headers (and the ones Connection names) are dropped.
    assert response.headers["x-upstream"] == "yes"
    assert "x-secret" not in response.headers and "keep-alive" not in response.headers
    assert len(response.headers.get_list("date")) == 1 and len(response.headers.get_list("server")) == 1


def test_raw_path_and_repeated_set_cookie(stack: StackFactory) -> None:
    s = stack()
    status, body = raw_request(s.port, b"GET /up/raw/a%2Fb%20c/%2e%2e/d?q=%ff HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert status == 200
    seen = json.loads(body)
    assert seen["raw_path"] == "/up/raw/a%2Fb%20c/%2e%2e/d"  # the bytes after the prefix, untouched
    assert seen["query"] == "q=%ff"
    cookies = httpx.get(f"{s.url}/up/cookies")
    assert cookies.headers.get_list("set-cookie") == ["a=1", "b=2"]
    echo = httpx.get(f"{s.url}/up/echo?q=%ff").json()
    assert echo["query"] == "q=%ff"


def test_routing_table(stack: StackFactory) -> None:
    s = stack(gateway_table="")
    s.gateway.wait_for(rf"route /up -> 127.0.0.1:{s.upstream_port}")
    missing = get(f"{s.url}/upx/echo")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not found", "path": "/upx/echo", "prefixes": ["/up"]}
    assert get(f"{s.url}/up").status_code == 404  # the upstream has no "/" route; no slash added by default


def test_longest_prefix_and_upstream_flags(stack: StackFactory, run_qkhyper: type[Qkhyper], project) -> None:
    s = stack()
    port = free_port()
    table = f'upstreams = {{ "/api" = ["127.0.0.1:{s.upstream_port}"] }}'
    s.config.write_text(s.config.read_text() + "\n[qkhyper.gateway]\n" + table + "\n")
    gateway = run_qkhyper(
        [
            "gateway",
            "--config",
            str(s.config),
            "--port",
            str(port),
            "--upstream",
            f"api/v2:127.0.0.1:{s.upstream_port}",
        ],
        project,
    )
    gateway.wait_ready()
    assert httpx.get(f"http://127.0.0.1:{port}/api/echo").json()["route"] == "/echo"
    v2 = httpx.get(f"http://127.0.0.1:{port}/api/v2/echo").json()
    assert v2["route"] == "/echo" and headers_of(v2)["x-forwarded-prefix"] == ["/api/v2"]
    v2x = httpx.get(f"http://127.0.0.1:{port}/api/v2x/echo")  # /api's upstream, which has no /v2x
    assert (v2x.status_code, v2x.text) == (404, "Not Found")


def test_fallback(stack: StackFactory) -> None:
    upstream_port = free_port()
    s = stack(
        ("--fallback", f"127.0.0.1:{upstream_port}"),
        apps=[{"name": "other", "app": "apps.upstream:app", "port": upstream_port}],
    )
    seen = get(f"{s.url}/echo?x=1").json()
    assert seen["path"] == "/echo" and "x-forwarded-prefix" not in headers_of(seen)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET http://127.0.0.1:1/up/echo HTTP/1.1\r\nHost: x\r\n\r\n",
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /up/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /..%2Fup/echo HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /%2e%2e/up/echo HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /up%5C../echo HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /./up/echo HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_hostile_requests_are_400(stack: StackFactory, request_bytes: bytes) -> None:
    s = stack()
    status, body = raw_request(s.port, request_bytes)
    assert status == 400
    assert b"Traceback" not in body


def test_errors_are_json_and_never_tracebacks(stack: StackFactory) -> None:
    dead = free_port()
    s = stack(("--upstream", f"dead:127.0.0.1:{dead}"))
    response = get(f"{s.url}/dead/x")
    assert response.status_code == 502
    assert response.json() == {
        "error": "bad gateway",
        "route": "/dead",
        "reason": "upstream refused the connection",
        "request_id": response.headers["x-request-id"],
    }
    s.gateway.wait_for(r"GET /dead/x -> /dead: connect to 127.0.0.1:\d+ failed")


def test_duplicate_upstream_prefix_is_exit_2(stack: StackFactory, project) -> None:
    s = stack()
    result = run_cli(
        ["gateway", "--config", str(s.config), "--upstream", "x:127.0.0.1:1", "--upstream", "/x/:127.0.0.1:2"], project
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "qkhyper: error: duplicate gateway prefix /x (--upstream)"
    result = run_cli(["gateway", "--config", str(s.config), "--upstream", "nonsense"], project)
    assert result.returncode == 2 and "must look like PREFIX=HOST[:PORT], PREFIX:HOST[:PORT]" in result.stderr


def test_max_body_size_and_cors(stack: StackFactory) -> None:
    s = stack(("--max-body-size", "1000", "--cors-origin", "http://app.example"))
    assert httpx.post(f"{s.url}/up/echo", content=b"x" * 999).json()["body_size"] == 999
    too_big = httpx.post(f"{s.url}/up/echo", content=b"x" * 1001)
    assert too_big.status_code == 413 and too_big.json()["error"] == "request body too large"

    def chunks():
        yield b"x" * 600
        yield b"x" * 600

    streamed = httpx.post(f"{s.url}/up/echo", content=chunks())
    assert streamed.status_code == 413
    preflight = httpx.options(
        f"{s.url}/up/echo",
        headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers["access-control-allow-origin"] == "http://app.example"
    cross = httpx.get(f"{s.url}/up/echo", headers={"Origin": "http://app.example"})
    assert cross.headers["access-control-expose-headers"] == "X-Request-ID"  # a page may read it


def test_cors_by_suffix_with_credentials_answered_at_the_gateway(stack: StackFactory) -> None:
    """The older gateway's habit: origins of the site's domain, with cookies; preflights never reach an app."""
    table = 'cors_origins = ["*.example.com"]\ncors_allow_credentials = true\ncors_allow_methods = ["GET", "POST"]'
    s = stack(gateway_table=table)
    ask = {"Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST"}
    preflight = httpx.options(f"{s.url}/up/echo", headers=ask)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert preflight.headers["access-control-allow-methods"] == "GET, POST"
    assert "Origin" in preflight.headers["vary"]
    assert preflight.text == "OK"  # answered here: the echo app answers JSON
    cross = httpx.get(f"{s.url}/up/echo", headers={"Origin": "https://shop.example.com"})
    assert cross.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert "Origin" in cross.headers["vary"]
    for stranger in ("https://evil-example.com", "https://shop.example.com.evil.net"):
        refused = httpx.options(f"{s.url}/up/echo", headers={**ask, "Origin": stranger})
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
        plain = httpx.get(f"{s.url}/up/echo", headers={"Origin": stranger})
        assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


def test_gateway_workers_and_graceful_stop(stack: StackFactory) -> None:
    s = stack(("--workers", "2", "--backend", "uvicorn"))
    assert len(s.gateway.pids("gateway")) == 2
    assert all(get(f"{s.url}/up/echo").status_code == 200 for _ in range(10))
    s.gateway.signal(signal.SIGTERM)
    assert s.gateway.wait() == 0


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_access_log(stack: StackFactory, backend: str) -> None:
    """The size is the body bytes the client got: a body with a length, and a chunked stream."""
    s = stack(("--access-log", "--backend", backend))
    size = len(get(f"{s.url}/up/echo").content)
    line = rf'"GET /up/echo HTTP/1.1" 200 {size} "-" "python-httpx/[^"]+" /up 127.0.0.1:{s.upstream_port} '
    s.gateway.wait_for(r"^gateway \| \d+\.\d+\.\d+\.\d+ - - \[[^]]+\] " + line + r"[\d.]+ms [0-9a-f]{32}$")
    streamed = get(f"{s.url}/up/download?size=3000000")
    assert len(streamed.content) == 3_000_000 and "content-length" not in streamed.headers
    s.gateway.wait_for(r'"GET /up/download HTTP/1.1" 200 3000000 "-" ')  # the path is logged without its query


def test_route_table_from_port_map(stack: StackFactory) -> None:
    s = stack(apps=[{"name": "auto", "app": "apps.upstream:app", "port": 0}])
    ports = json.loads((s.config.parent / ".qkhyper" / "ports.json").read_text())
    assert get(f"{s.url}/auto/echo").json()["route"] == "/echo"
    s.gateway.wait_for(rf"route /auto -> 127.0.0.1:{ports['apps']['auto']['port']}")


def test_gateway_in_front_of_serve_aio(stack: StackFactory, run_qkhyper: type[Qkhyper], project) -> None:
    s = stack(
        serve=False, apps=[{"name": "alpha", "app": "apps.probe:alpha"}, {"name": "beta", "app": "apps.probe:beta"}]
    )
    # `stack` started the gateway before any port map existed; start serve --aio, then a new gateway.
    aio = free_port()
    run_qkhyper(["serve", "--aio", "--port", str(aio), "--config", str(s.config)], project).wait_ready()
    port = free_port()
    gateway = run_qkhyper(["gateway", "--config", str(s.config), "--port", str(port)], project)
    gateway.wait_ready()
    gateway.wait_for(rf"route /alpha -> 127.0.0.1:{aio} \(full path\)")
    seen = httpx.get(f"http://127.0.0.1:{port}/beta/scope").json()
    assert (seen["root_path"], seen["path"], seen["resource"]["name"]) == ("/beta", "/beta/scope", "beta")
