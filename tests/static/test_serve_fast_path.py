"""`StaticApp._serve` answers a plain GET of a small cached file itself; it must send what `send_variant` sends.

For each request of a table, the app's messages are compared with those
`respond.send_variant` produces for the same cached variant and the outcome
`conditional.evaluate` gives: the fast path (no validators, no Range, GET,
body in memory) and every case that still goes through `send_variant`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from qkhyper.asgi.types import Message
from qkhyper.static.app import StaticApp
from qkhyper.static.conditional import evaluate
from qkhyper.static.respond import send_variant

BODY = b"0123456789" * 100
ETAG_WILDCARD = b"*"

REQUESTS: list[tuple[str, str, list[tuple[bytes, bytes]]]] = [
    ("GET", "/1k.txt", []),
    ("GET", "/1k.txt", [(b"user-agent", b"x"), (b"accept", b"*/*")]),
    ("HEAD", "/1k.txt", []),
    ("GET", "/1k.txt", [(b"if-none-match", ETAG_WILDCARD)]),
    ("GET", "/1k.txt", [(b"if-none-match", b'"other"')]),
    ("GET", "/1k.txt", [(b"if-modified-since", b"Thu, 01 Jan 2099 00:00:00 GMT")]),
    ("GET", "/1k.txt", [(b"range", b"bytes=10-19")]),
    ("GET", "/1k.txt", [(b"range", b"bytes=5000-")]),
    ("HEAD", "/1k.txt", [(b"range", b"bytes=10-19")]),
    ("GET", "/1k.txt", [(b"accept-encoding", b"gzip, br")]),
    ("GET", "/app.js", []),
    ("GET", "/app.js", [(b"accept-encoding", b"gzip, br")]),
    ("GET", "/app.js", [(b"accept-encoding", b"gzip"), (b"if-none-match", b'"nope"')]),
    ("HEAD", "/app.js", [(b"accept-encoding", b"br")]),
    ("GET", "/empty.txt", []),
    ("HEAD", "/empty.txt", []),
]


def make_app(root: Path) -> StaticApp:
    (root / "1k.txt").write_bytes(BODY)
    (root / "app.js").write_bytes(b"console.log(1);\n" * 20)
    (root / "app.js.gz").write_bytes(b"GZIP-BYTES")
    (root / "app.js.br").write_bytes(b"BROTLI-BYTES")
    (root / "empty.txt").write_bytes(b"")
    return StaticApp(str(root), recheck=3600.0)


def scope_for(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"a"), *headers],
    }


async def call(app: StaticApp, scope: dict[str, Any]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def reference(app: StaticApp, scope: dict[str, Any]) -> list[Message]:
    """What send_variant sends for this request, from the app's cached resource."""
    resource = app.resources.get(scope["raw_path"])
    assert resource is not None
    headers = dict(scope["headers"])
    variant = resource.identity
    if resource.encodings:
        variant = resource.pick(app._choose(headers.get(b"accept-encoding"), resource.encodings))
    body = app.files.get(variant.path, variant.key)
    head = scope["method"] == "HEAD"
    outcome = evaluate(
        head=head,
        size=variant.size,
        etag=variant.etag,
        last_modified=variant.last_modified,
        mtime=variant.mtime,
        if_none_match=headers.get(b"if-none-match"),
        if_modified_since=headers.get(b"if-modified-since"),
        range_=headers.get(b"range"),
        if_range=headers.get(b"if-range"),
    )
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    assert await send_variant(send, receive, variant, body, outcome, head)
    return sent


@pytest.mark.parametrize(("method", "path", "headers"), REQUESTS)
def test_cached_answer_is_what_send_variant_sends(
    tmp_path: Path, method: str, path: str, headers: list[tuple[bytes, bytes]]
) -> None:
    app = make_app(tmp_path)
    scope = scope_for(method, path, headers)

    async def run() -> tuple[list[Message], list[Message], list[Message]]:
        first = await call(app, scope)  # resolves and caches
        cached = await call(app, scope)  # answered from the resource cache
        return first, cached, await reference(app, scope)

    first, cached, expected = asyncio.run(run())
    assert cached == expected
    assert first == expected
    assert cached[0]["status"] in (200, 206, 304, 416)


def test_fast_path_still_checks_the_file(tmp_path: Path) -> None:
    """A changed file is noticed on the fast path too: the new body, with its new ETag."""
    app = make_app(tmp_path)
    scope = scope_for("GET", "/1k.txt", [])

    async def run() -> tuple[list[Message], list[Message]]:
        before = await call(app, scope)
        time.sleep(0.01)
        (tmp_path / "1k.txt").write_bytes(b"changed")
        return before, await call(app, scope)

    before, after = asyncio.run(run())
    assert before[1]["body"] == BODY and after[1]["body"] == b"changed"
    assert dict(before[0]["headers"])[b"etag"] != dict(after[0]["headers"])[b"etag"]
