"""Requests the gateway must refuse, whatever server it runs on (SPEC §4, edge limits).

uvicorn's httptools protocol used to let a duplicate or missing Host through
and reduced an absolute-form target to its path, so the gateway forwarded
`GET http://evil.example/up/echo`; Hypercorn kept a connection open after a
request with Content-Length and Transfer-Encoding, so what followed the chunked
end ran as a second request. Every refusal is a 400 (or 431), the gateway's own
small JSON or the server's own answer, never a 500 or a traceback.
"""

from __future__ import annotations

import json

import pytest

from tests.backends.harness import CL_TE, statuses, with_headers
from tests.conftest import exchange
from tests.gateway.conftest import StackFactory

REFUSED = {
    "duplicate-host": b"GET /up/echo HTTP/1.1\r\nHost: gw\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    "missing-host": b"GET /up/echo HTTP/1.1\r\nConnection: close\r\n\r\n",
    "absolute-form": b"GET http://evil.example/up/echo HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    "absolute-form-same-host": b"GET http://gw/up/echo HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    "connect": b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n",
}


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_refused_requests(stack: StackFactory, backend: str) -> None:
    s = stack(("--backend", backend))
    assert statuses(exchange(s.port, b"GET /up/echo HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")) == [200]
    answers = {name: exchange(s.port, request) for name, request in REFUSED.items()}
    wrong = {name: answer[:300] for name, answer in answers.items() if statuses(answer) != [400]}
    assert not wrong, wrong
    for name, answer in answers.items():
        body = answer.partition(b"\r\n\r\n")[2]
        if body.startswith(b"{"):
            assert json.loads(body)["error"] == "bad request", name
    assert statuses(exchange(s.port, with_headers(101, b"/up/echo"))) == [431]
    assert "Traceback" not in s.gateway.output
    assert s.serve is not None and "Traceback" not in s.serve.output


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_smuggled_request_after_content_length_and_transfer_encoding_never_runs(
    stack: StackFactory, backend: str
) -> None:
    """One answer, 400, then the connection closes (RFC 9112 §6.1): the bytes after the chunked end are dropped."""
    s = stack(("--backend", backend))
    assert statuses(exchange(s.port, CL_TE.replace(b"/echo", b"/up/echo"))) == [400]
    assert "Traceback" not in s.gateway.output
