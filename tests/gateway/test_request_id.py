"""Request IDs and trace context through a real `qkhyper gateway`, on both backends.

The in-process tests (tests/proxy) hold every rule; these check that both
servers carry what the proxy core decides: the response header, the 101's
header (from `websocket.accept`), and the access log line.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from websockets.sync.client import connect

from tests.gateway.conftest import StackFactory
from tests.gateway.test_forwarding import headers_of

BACKENDS = ["hypercorn", "uvicorn"]
HEX_ID = re.compile(r"[0-9a-f]{32}")
TRACE = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "congo=t61rcWkgMzE"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_request_id_is_kept_or_made_sent_returned_and_logged(stack: StackFactory, backend: str) -> None:
    s = stack(("--backend", backend, "--access-log"))
    kept = httpx.get(f"{s.url}/up/echo", headers={"X-Request-ID": "e2e-1", **TRACE}, timeout=15)
    got = headers_of(kept.json())
    assert got["x-request-id"] == ["e2e-1"] and kept.headers.get_list("x-request-id") == ["e2e-1"]
    assert (got["traceparent"], got["tracestate"]) == ([TRACE["traceparent"]], [TRACE["tracestate"]])
    s.gateway.wait_for(r'"GET /up/echo HTTP/1\.1" 200 .* /up \S+ [\d.]+ms e2e-1$')

    hostile = [("X-Request-ID", "<script>alert(1)</script>"), ("X-Request-ID", "second")]
    replaced = httpx.get(f"{s.url}/up/echo", headers=hostile, timeout=15)
    (made,) = replaced.headers.get_list("x-request-id")
    assert HEX_ID.fullmatch(made) and headers_of(replaced.json())["x-request-id"] == [made]
    s.gateway.wait_for(rf'"GET /up/echo HTTP/1\.1" 200 .* /up \S+ [\d.]+ms {made}$')
    assert "<script>" not in s.gateway.output

    with connect(f"ws://127.0.0.1:{s.port}/up/ws-headers", additional_headers={"X-Request-ID": "ws-1"}) as ws:
        assert ws.response is not None and ws.response.headers.get_all("x-request-id") == ["ws-1"]
        seen = json.loads(ws.recv(timeout=15))
    assert [v for k, v in seen["headers"] if k == "x-request-id"] == ["ws-1"]


def test_request_ids_can_be_turned_off(stack: StackFactory) -> None:
    s = stack(gateway_table="request_id = false")
    response = httpx.get(f"{s.url}/up/echo", headers={"X-Request-ID": "not checked"}, timeout=15)
    assert headers_of(response.json())["x-request-id"] == ["not checked"]
    assert "x-request-id" not in response.headers
