"""The docs-page rewriter: small HTML rewritten whole, anything incomplete handed on as the app left it."""

from __future__ import annotations

from typing import Any

import pytest

from qkhyper.asgi.docs_assets import DocsAssetsMiddleware
from qkhyper.asgi.types import Message, Receive, Scope, Send

pytestmark = pytest.mark.anyio

PAGE = b'<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>'
SCOPE: Scope = {
    "type": "http",
    "method": "GET",
    "path": "/docs",
    "raw_path": b"/docs",
    "root_path": "/users",
    "headers": [(b"accept", b"text/html")],
}


def html_start(length: int) -> Message:
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(length).encode())]
    return {"type": "http.response.start", "status": 200, "headers": headers}


async def run(messages: list[Message], fail: bool = False) -> list[Message]:
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(message)
        if fail:
            raise RuntimeError("app failed")

    async def receive() -> Message:
        raise AssertionError("not read")

    async def send(message: Message) -> None:
        sent.append(message)

    if fail:
        with pytest.raises(RuntimeError):
            await DocsAssetsMiddleware(app)(SCOPE, receive, send)
    else:
        await DocsAssetsMiddleware(app)(SCOPE, receive, send)
    return sent


async def test_a_complete_page_is_rewritten_with_its_new_length() -> None:
    sent = await run([html_start(len(PAGE)), {"type": "http.response.body", "body": PAGE}])
    body = sent[1]["body"]
    assert b"/users/_qkhyper/docs/swagger-ui-bundle.js" in body
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(body)).encode()


@pytest.mark.parametrize(
    "messages",
    [
        [html_start(len(PAGE))],
        [html_start(len(PAGE)), {"type": "http.response.body", "body": PAGE[:10], "more_body": True}],
    ],
    ids=["start-only", "part-of-body"],
)
async def test_an_app_that_ends_early_gets_its_start_and_body_passed_on(messages: list[Message]) -> None:
    """It used to keep them: the server then answered 500 instead of the app's truncated 200."""
    sent = await run(messages)
    assert sent[0] == messages[0]
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"".join(m.get("body", b"") for m in messages[1:])
    assert all(m.get("more_body") for m in sent[1:])


async def test_an_app_that_raises_midway_still_gets_its_start_passed_on() -> None:
    messages: list[dict[str, Any]] = [html_start(len(PAGE))]
    assert await run(messages, fail=True) == messages
