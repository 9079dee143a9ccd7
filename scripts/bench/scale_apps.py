"""The scale rows' upstream: `uvicorn scale_apps:app`, one raw ASGI app for all three rows.

Raw ASGI rather than FastAPI so that the upstream (which shares two cores with the
client and the proxy under test) costs as little as possible per message:

- `GET /` (any other path too): a tiny 200 with a Content-Length, for the idle row and
  for the bench's readiness poll.
- `GET /sse?count=C&phase=P`: a `text/event-stream` of C events, one a second, the first
  P seconds after the request; each event is `data: SEQ SENT` where SENT is
  `time.time()` just before the send, so the client (same machine, same clock) computes
  the delivery delay through the proxy.
- a WebSocket on any path: every message is echoed back as it came (text or bytes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
HELLO = b'{"hello":"world"}'


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "websocket":
        await echo(receive, send)
    elif scope["path"] == "/sse":
        await events(scope, send)
    else:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(HELLO)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": HELLO})


async def echo(receive: Receive, send: Send) -> None:
    """Accept, then send every message back until the client goes."""
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def events(scope: Scope, send: Send) -> None:
    """C events on a one-second grid from the request's arrival plus P (spreads N streams over the second)."""
    query = parse_qs(scope["query_string"].decode())
    count = min(int(query.get("count", ["10"])[0]), 3600)
    phase = float(query.get("phase", ["0"])[0]) % 1.0
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    loop = asyncio.get_running_loop()
    start = loop.time() + phase
    for seq in range(count):
        await asyncio.sleep(max(0.0, start + seq - loop.time()))
        body = b"data: %d %.6f\n\n" % (seq, time.time())
        await send({"type": "http.response.body", "body": body, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
