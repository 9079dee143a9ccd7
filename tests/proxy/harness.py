"""In-process proxy tests: the whole core on `MockBackend`, an ASGI client in a list, trio's MockClock.

`run_core` starts a `ProxyCore` with its watchdog, `Client` plays the ASGI
server's side of one request (scripted `receive`, recorded `send`), and
`assert_no_leak` checks the rule every test ends with: each connection the
proxy opened is closed or idle in the pool. `PARSER` is the upstream parser
(conftest.py runs each test with h11 and with httptools).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import trio

from qkhyper.asgi.types import Message, Scope
from qkhyper.config.model import ProxySettings
from qkhyper.proxy.codec import CodecFactory, codec_class
from qkhyper.proxy.core import ProxyCore
from qkhyper.proxy.forward import BodyRewriter, RedirectFollower, Route
from qkhyper.proxy.mock import MockBackend, MockStream
from qkhyper.proxy.protocol import match_prefix, raw_path

TARGET = ("up.test", 9000)


def response(
    status: int = 200, body: bytes = b"ok", headers: Sequence[tuple[str, str]] = (), *, length: bool = True
) -> bytes:
    """An upstream's HTTP/1.1 response, as bytes."""
    lines = [f"HTTP/1.1 {status} X"]
    lines += [f"{k}: {v}" for k, v in headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*chunks: bytes, status: int = 200, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    head = response(status, b"", [*headers, ("Transfer-Encoding", "chunked")], length=False)
    return head + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def http_scope(
    path: str = "/up/x",
    method: str = "GET",
    headers: Iterable[tuple[bytes, bytes]] = ((b"host", b"gw.test"),),
    *,
    raw_path: bytes | None = None,
    query: bytes = b"",
) -> Scope:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": list(headers),
        "client": ("192.0.2.7", 40000),
        "server": ("127.0.0.1", 8000),
    }


def ws_scope(path: str = "/up/ws", headers: Iterable[tuple[bytes, bytes]] = ((b"host", b"gw.test"),)) -> Scope:
    return {
        **http_scope(path, headers=headers),
        "type": "websocket",
        "scheme": "ws",
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}},
    }


@dataclass
class Client:
    """The ASGI server's side: `receive` replays `messages`, then waits for `leave` (an http.disconnect)."""

    messages: list[Message] = field(default_factory=lambda: [{"type": "http.request", "body": b""}])
    sent: list[Message] = field(default_factory=list)
    leave: trio.Event = field(default_factory=trio.Event)
    received: trio.Event = field(default_factory=trio.Event)

    async def receive(self) -> Message:
        """Like a server: the scripted messages, then a disconnect once the client leaves
        or the response is complete (both servers say so then)."""
        await trio.lowlevel.checkpoint()
        if self.messages:
            return self.messages.pop(0)
        while not self.complete and not self.leave.is_set():
            with trio.move_on_after(0.05):
                await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        """Record `message`; like a server, refuse anything after the response has ended."""
        await trio.lowlevel.checkpoint()
        if self.complete:
            raise RuntimeError(f"{message['type']} after the response ended")
        self.sent.append(message)
        self.received.set()

    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] in ("http.response.start", "websocket.http.response.start")]
        return starts[0]["status"] if starts else None

    @property
    def headers(self) -> dict[bytes, bytes]:
        starts = [m for m in self.sent if m["type"].endswith("response.start")]
        return dict(starts[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"].endswith("response.body"))

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def complete(self) -> bool:
        """The response ended properly (a last body message without more_body)."""
        bodies = [m for m in self.sent if m["type"].endswith("response.body")]
        return bool(bodies) and not bodies[-1].get("more_body", False)


def body_messages(*chunks: bytes) -> list[Message]:
    return [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]


# The upstream parser the proxy tests run with: conftest.py runs every test once with each.
PARSER: ContextVar[str] = ContextVar("PARSER", default="auto")


def codec() -> CodecFactory:
    """The codec of the parser this test runs with, for tests that build connections themselves."""
    return codec_class(PARSER.get())


def settings(**changes: Any) -> ProxySettings:
    return ProxySettings(**{"upstream_parser": PARSER.get(), **changes})


def make_core(
    streams: Iterable[MockStream | BaseException | object],
    proxy: ProxySettings | None = None,
    *,
    rewrite_body: BodyRewriter | None = None,
    follow_redirect: RedirectFollower | None = None,
) -> tuple[ProxyCore, MockBackend]:
    backend = MockBackend(streams)  # type: ignore[arg-type]
    core = ProxyCore(
        proxy or settings(),
        backend=backend,
        clock=trio.current_time,
        rewrite_body=rewrite_body,
        follow_redirect=follow_redirect,
    )
    return core, backend


def route(core: ProxyCore, prefix: str = "/up", targets: Sequence[tuple[str, int]] = (TARGET,), **kw: Any) -> Route:
    return core.route(prefix, targets, **kw)


@asynccontextmanager
async def running(core: ProxyCore) -> AsyncIterator[trio.Nursery]:
    """The core's watchdog running, as the embedding app's lifespan does."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(core.watchdog.run, nursery)  # type: ignore[arg-type]
        yield nursery
        nursery.cancel_scope.cancel()


async def call(core: ProxyCore, scope: Scope, client: Client, the_route: Route | None = None) -> None:
    """One request through the core, the watchdog running."""
    the_route = the_route or route(core)
    matched = match_prefix(raw_path(scope), the_route.prefix.encode()) or 0  # as the gateway's table does
    async with running(core):
        await core.handle(scope, client.receive, client.send, the_route, matched)


def assert_no_leak(core: ProxyCore, backend: MockBackend) -> None:
    """Every connection opened is closed, or idle in the pool (and then still open)."""
    idle = {id(conn.stream) for conns in core.pool._idle.values() for conn in conns}
    for stream in backend.opened:
        assert stream.closed != (id(stream) in idle), f"leaked: {stream!r} closed={stream.closed}"
    assert len(core.watchdog) == 0, "watchdog entries left behind"


def request_line(written: bytes, index: int = 0) -> bytes:
    """The request line of the `index`th request the proxy wrote on a stream."""
    return re.findall(rb"(?m)^[A-Z]+ \S+ HTTP/1\.1\r$", written)[index].rstrip(b"\r")


def ws_accept(written: bytes, extra: bytes = b"", headers: str = "") -> bytes:
    """The upstream's 101 for the handshake the proxy wrote, plus `extra` bytes in the same packet."""
    key = re.search(rb"(?i)sec-websocket-key: (\S+)", written)
    assert key is not None, written
    accept = base64.b64encode(hashlib.sha1(key.group(1) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    return head + b"Sec-WebSocket-Accept: " + accept + b"\r\n" + headers.encode() + b"\r\n" + extra
