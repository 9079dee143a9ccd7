"""The small JSON answers qkhyper itself gives (errors, indexes)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .types import Message, Scope, Send


async def send_json(send: Send, status: int, body: Any, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def answer_json(
    scope: Scope, send: Send, status: int, body: Any, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """`send_json` for an HTTP request, or for a WebSocket handshake the same answer as a denial.

    Both servers offer the "websocket.http.response" extension; without it, a
    refused handshake can only be closed (1008; the server answers 403).
    """
    if scope["type"] == "http":
        await send_json(send, status, body, headers)
    elif "websocket.http.response" in (scope.get("extensions") or {}):
        await send_json(_as_denial(send), status, body, headers)
    else:
        await send({"type": "websocket.close", "code": 1008})


def _as_denial(send: Send) -> Send:
    async def denial(message: Message) -> None:
        await send({**message, "type": "websocket." + message["type"]})

    return denial
