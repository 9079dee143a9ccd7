"""The gateway ending TLS in front of plain-HTTP apps on loopback: HTTPS, HTTP/2 on Hypercorn, wss://."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.certs import Certs, make_certs
from tests.conftest import backend_env
from tests.gateway.conftest import Stack, StackFactory

TLS = 'certfile = "tls/server.pem"\nkeyfile = "tls/server.key"'


@pytest.fixture
def certs(project: Path) -> Certs:
    return make_certs(project / "tls")


def tls_stack(stack: StackFactory, backend: str, qkhyper: str = "") -> Stack:
    s = stack(tuple(backend_env(backend)[0]), gateway_table=TLS, qkhyper=qkhyper)
    s.url = f"https://127.0.0.1:{s.port}"
    return s


@pytest.mark.parametrize(
    ("backend", "version"), [("hypercorn", "HTTP/2"), ("hypercorn-trio", "HTTP/2"), ("uvicorn", "HTTP/1.1")]
)
def test_https_in_front_of_plain_http_apps(stack: StackFactory, certs: Certs, backend: str, version: str) -> None:
    s = tls_stack(stack, backend)
    s.gateway.wait_for(rf"routes of https://127.0.0.1:{s.port} \(TLS ends here; the routes get plain HTTP\):")
    s.gateway.wait_for(rf"\| gateway\s+/\s+https://127.0.0.1:{s.port}\s")  # the ready table
    with httpx.Client(verify=certs.client_context(), http2=True, timeout=30) as client:
        response = client.get(f"{s.url}/up/echo?x=1", headers={"x-test": "a"})
        assert response.status_code == 200
        assert response.http_version == version
        seen = dict(response.json()["headers"])
        assert seen["x-forwarded-proto"] == "https"
        assert seen["x-test"] == "a"
        assert response.json()["route"] == "/echo"
        upload = client.post(f"{s.url}/up/echo", content=b"z" * 300_000)
        assert upload.json()["body_size"] == 300_000
        assert upload.http_version == version
    assert s.serve is not None and "https://" not in s.serve.output  # the app stayed on plain HTTP


@pytest.mark.parametrize("backend", ["hypercorn", "hypercorn-trio", "uvicorn"])
def test_wss_through_the_gateway(stack: StackFactory, certs: Certs, backend: str) -> None:
    s = tls_stack(stack, backend)
    base = f"wss://127.0.0.1:{s.port}/up"
    with connect(f"{base}/ws", ssl=certs.client_context(), subprotocols=["v1", "v2"], open_timeout=15) as ws:
        assert ws.subprotocol == "v2"
        ws.send("hello")
        assert ws.recv(timeout=15) == "hello"
        big = b"z" * 300_000
        ws.send(big)
        assert ws.recv(timeout=15) == big
        ws.send("close-me")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=15)
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4002, "bye")
    with connect(f"{base}/ws-scope", ssl=certs.client_context(), open_timeout=15) as ws:
        seen = ws.recv(timeout=15)
    assert json.loads(seen)["scheme"] == "wss"  # the app behind sees the client's scheme, from X-Forwarded-Proto


def test_plain_http_to_the_tls_gateway_gets_no_answer(stack: StackFactory, certs: Certs) -> None:
    s = tls_stack(stack, "hypercorn")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{s.port}/up/echo", timeout=10)


def test_max_header_size_means_the_same_over_http2(stack: StackFactory, certs: Certs) -> None:
    """h2 would close the connection past 64 KiB whatever Hypercorn advertised; the limit is max_header_size."""
    s = tls_stack(stack, "hypercorn", qkhyper="max_header_size = 200000")
    with httpx.Client(verify=certs.client_context(), http2=True, timeout=30) as client:
        allowed = client.get(f"{s.url}/up/echo", headers={"x-big": "a" * 100_000})
        assert (allowed.status_code, allowed.http_version) == (200, "HTTP/2")
        refused = client.get(f"{s.url}/up/echo", headers={"x-big": "a" * 201_000})
        assert (refused.status_code, refused.http_version) == (431, "HTTP/2")
    # Past the advertised header list size (the limit + 32 bytes a header), HTTP/2's own answer: the connection ends.
    with httpx.Client(verify=certs.client_context(), http2=True, timeout=30) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(f"{s.url}/up/echo", headers={"x-big": "a" * 300_000})
