"""EdgeMiddleware in-process: the header-count cap and the CL+TE backstop, for HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from qkhyper.asgi.edge import EdgeMiddleware, refusal
from qkhyper.config.model import EdgeLimits

CL = (b"content-length", b"5")
TE = (b"transfer-encoding", b"chunked")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"host", b"a")] * 100, None),
        ([(b"host", b"a")] * 101, (431, "more than 100 header lines")),
        ([CL, TE], (400, "both Content-Length and Transfer-Encoding")),
        (
            [(b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked")],
            (400, "both Content-Length and Transfer-Encoding"),
        ),
        ([CL], None),
        ([TE], None),
        ([(b"x-content-length", b"5"), TE], None),
    ],
    ids=["100-lines", "101-lines", "cl-te", "cl-te-raw-case", "cl", "te", "lookalike"],
)
def test_refusal(headers: list[tuple[bytes, bytes]], expected: tuple[int, str] | None) -> None:
    assert refusal(headers, 100) == expected


DEFAULT = EdgeLimits()


def run(scope: dict[str, Any], limits: EdgeLimits = DEFAULT) -> tuple[list[dict[str, Any]], bool]:
    """Call the middleware around an app that records whether it ran; return what was sent."""
    sent: list[dict[str, Any]] = []
    ran = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal ran
        ran = True

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(EdgeMiddleware(app, limits)(scope, receive, send))
    return sent, ran


def test_http_refusal_is_json_and_closes_the_connection() -> None:
    sent, ran = run({"type": "http", "headers": [CL, TE]})
    assert not ran
    assert sent[0]["status"] == 400 and (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {
        "error": "bad request",
        "detail": "both Content-Length and Transfer-Encoding",
    }


def test_the_limit_is_the_setting() -> None:
    headers = [(b"x-a", b"1")] * 3
    assert run({"type": "http", "headers": headers}, EdgeLimits(max_headers=3))[1]
    sent, ran = run({"type": "http", "headers": headers}, EdgeLimits(max_headers=2))
    assert not ran and sent[0]["status"] == 431


def test_websocket_refusal_uses_the_http_response_extension_where_offered() -> None:
    headers = [(b"x-a", b"1")] * 101
    sent, _ = run({"type": "websocket", "headers": headers, "extensions": {"websocket.http.response": {}}})
    assert [m["type"] for m in sent] == ["websocket.http.response.start", "websocket.http.response.body"]
    assert sent[0]["status"] == 431
    sent, _ = run({"type": "websocket", "headers": headers})
    assert sent == [{"type": "websocket.close", "code": 1008}]


def test_lifespan_and_fitting_requests_pass() -> None:
    assert run({"type": "lifespan"}) == ([], True)
    assert run({"type": "http", "headers": [CL]}) == ([], True)
