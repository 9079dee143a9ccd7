"""X-Forwarded-* from trusted peers, and X-Forwarded-Prefix as root_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from qkhyper.asgi.proxy_headers import TrustedPeers, apply_forwarded, clean_prefix, client_from_chain
from tests.conftest import Qkhyper, free_port, get, write_config

LOOPBACK = TrustedPeers(["127.0.0.1", "::1"])


def scope(**headers: str) -> dict[str, object]:
    return {
        "type": "http",
        "scheme": "http",
        "path": "/scope",
        "raw_path": b"/scope",
        "root_path": "",
        "client": ("127.0.0.1", 5000),
        "headers": [(b"host", b"127.0.0.1:8001")]
        + [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }


def test_prefix_becomes_root_path_and_is_put_back_in_path() -> None:
    original = scope(x_forwarded_prefix="/users")
    result = apply_forwarded(original, LOOPBACK)
    assert (result["root_path"], result["path"], result["raw_path"]) == ("/users", "/users/scope", b"/users/scope")
    assert original["path"] == "/scope"  # the original scope is never mutated


@pytest.mark.parametrize(
    ("value", "prefix"),
    [
        ("/users", "/users"),
        ("/users/", "/users"),
        ("/a/b", "/a/b"),
        ("users", ""),
        ("/../etc", ""),
        ("/a/./b", ""),
        ("/a b", ""),
        ("//evil.example", ""),
        ("/x\r\nSet-Cookie: a=b", ""),
        ("", ""),
        ("/a,/b", "/b"),
    ],
)
def test_clean_prefix(value: str, prefix: str) -> None:
    assert clean_prefix(value) == prefix


def test_client_scheme_and_host() -> None:
    result = apply_forwarded(
        scope(x_forwarded_for="203.0.113.9, 127.0.0.1", x_forwarded_proto="https", x_forwarded_host="example.com"),
        LOOPBACK,
    )
    assert result["client"] == ("203.0.113.9", 0)
    assert result["scheme"] == "https"
    assert (b"host", b"example.com") in result["headers"]
    assert (b"host", b"127.0.0.1:8001") not in result["headers"]


def test_forwarded_for_takes_the_rightmost_untrusted_hop() -> None:
    assert client_from_chain("1.1.1.1, 2.2.2.2, 127.0.0.1", LOOPBACK) == "2.2.2.2"
    assert client_from_chain("127.0.0.1", LOOPBACK) == "127.0.0.1"
    assert TrustedPeers(["10.0.0.0/8"]).__contains__("10.1.2.3")
    assert "8.8.8.8" in TrustedPeers(["*"])
    assert "not-an-ip" not in LOOPBACK


def test_websocket_scheme() -> None:
    ws = {**scope(x_forwarded_proto="https"), "type": "websocket", "scheme": "ws"}
    assert apply_forwarded(ws, LOOPBACK)["scheme"] == "wss"


def test_bad_values_are_ignored() -> None:
    result = apply_forwarded(scope(x_forwarded_proto="gopher", x_forwarded_host="a b"), LOOPBACK)
    assert result["scheme"] == "http"
    assert (b"host", b"127.0.0.1:8001") in result["headers"]


HEADERS = {
    "Accept": "text/html,application/json",
    "X-Forwarded-Prefix": "/users",
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "example.com",
}


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_behind_a_trusted_proxy(project: Path, run_qkhyper: type[Qkhyper], backend: str) -> None:
    port = free_port()
    config = write_config(project, [{"name": "users", "app": "apps.probe:app", "port": port}])
    server = run_qkhyper(["serve", "--backend", backend, "--config", str(config)], project)
    server.wait_ready()
    base = f"http://127.0.0.1:{port}"
    seen = get(f"{base}/scope", headers=HEADERS).json()
    assert seen["root_path"] == "/users" and seen["path"] == "/users/scope"
    assert seen["client"] == "203.0.113.9" and seen["scheme"] == "https" and seen["host"] == "example.com"
    assert seen["url"] == "https://example.com/users/scope"
    redirect = get(f"{base}/items", headers=HEADERS, follow_redirects=False)
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "https://example.com/users/items/"
    docs = get(f"{base}/docs", headers=HEADERS).text
    assert "'/users/openapi.json'" in docs
    assert "/users/_qkhyper/docs/swagger-ui.css" in docs
    assert get(f"{base}/openapi.json", headers=HEADERS).json()["servers"] == [{"url": "/users"}]
    assert get(f"{base}/_qkhyper/docs/swagger-ui.css", headers=HEADERS).status_code == 200
    direct = get(f"{base}/scope").json()
    assert direct["root_path"] == "" and direct["client"] == "127.0.0.1"


def test_untrusted_peer_is_not_believed(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    port = free_port()
    config = write_config(
        project,
        [{"name": "users", "app": "apps.probe:app", "port": port}],
        qkhyper='forwarded_allow_ips = ["10.9.9.9"]',
    )
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    seen = get(f"http://127.0.0.1:{port}/scope", headers=HEADERS).json()
    assert (seen["root_path"], seen["client"], seen["scheme"]) == ("", "127.0.0.1", "http")
    assert seen["host"] == f"127.0.0.1:{port}"


def test_cdn_docs_assets_leave_pages_untouched(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    port = free_port()
    config = write_config(
        project, [{"name": "users", "app": "apps.probe:app", "port": port}], qkhyper='docs_assets = "cdn"'
    )
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    assert "cdn.jsdelivr.net" in get(f"http://127.0.0.1:{port}/docs", headers={"Accept": "text/html"}).text
    assert get(f"http://127.0.0.1:{port}/_qkhyper/docs/swagger-ui.css").status_code == 404
