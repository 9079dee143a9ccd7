"""Sending a variant: from memory when small, streamed from a thread-backed file when large.

Large files go out in 1 MiB chunks: ASGI servers cannot `sendfile`, and
64 KiB chunks measured five times slower (NOTES.md). Memory stays at about
two chunks per response because both servers await the socket's drain
inside `send`. A watcher task ends the stream when the client disconnects,
since uvicorn silently drops body messages after a disconnect and the file
would otherwise be read to its end.

Where the chunks are read: a thread hop per chunk (`anyio.to_thread`) cost
60-80% more CPU per GB than reading on the event loop, measured on both
backends (0.7-0.9 against 0.5 CPU-seconds per GB, which on a busy machine
is the throughput). But a read on the loop may block on the disk. On Linux,
`preadv(..., RWF_NOWAIT)` reads only what the page cache already holds and
fails with EAGAIN instead of blocking, so `ChunkReader` reads cached data on
the loop into one reusable buffer and sends everything else to a thread.
"""

from __future__ import annotations

import logging
import os

import anyio

from ..asgi.responses import send_json
from ..asgi.types import Receive, Send
from .conditional import Outcome
from .files import open_regular, stat_key
from .resources import NOSNIFF, Headers, Variant, partial_headers

CHUNK = 1024 * 1024
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None) if hasattr(os, "preadv") else None
log = logging.getLogger("qkhyper.static")


async def send_variant(
    send: Send, receive: Receive, variant: Variant, body: bytes | None, outcome: Outcome, head: bool
) -> bool:
    """Send the response `outcome` asks for; False when nothing was sent.

    Nothing is sent when a large file vanished or changed between the cache
    check and opening it; the caller then resolves the path again.
    """
    status = outcome.status
    if status == 304:
        await _send(send, 304, variant.not_modified, b"")
        return True
    if status == 416:
        span = f"bytes */{variant.size}".encode("ascii")
        await send_json(send, 416, {"error": "range not satisfiable"}, [(b"content-range", span), NOSNIFF])
        return True
    start, end = (outcome.start, outcome.end) if status == 206 else (0, variant.size - 1)
    headers = partial_headers(variant, start, end) if status == 206 else variant.full
    if head or variant.size == 0:
        await _send(send, status, headers, b"")
        return True
    if body is not None:
        await _send(send, status, headers, body if status == 200 else body[start : end + 1])
        return True
    return await _stream(send, receive, variant, status, headers, start, end + 1 - start)


async def _send(send: Send, status: int, headers: Headers, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _stream(
    send: Send, receive: Receive, variant: Variant, status: int, headers: Headers, start: int, length: int
) -> bool:
    try:
        fd, st = await anyio.to_thread.run_sync(open_regular, variant.path)
    except OSError:
        return False
    try:
        if stat_key(st) != variant.key:
            return False
        await send({"type": "http.response.start", "status": status, "headers": headers})
        async with anyio.create_task_group() as group:
            group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
            await _pump(send, fd, start, length)
            group.cancel_scope.cancel()
    finally:
        os.close(fd)
    return True


class ChunkReader:
    """Reads one open file by offset: from the page cache on the loop when it can, else in a thread."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.nowait = _NOWAIT
        self.buffer = memoryview(bytearray(CHUNK)) if _NOWAIT is not None else None

    async def read(self, offset: int, size: int) -> bytes:
        if self.nowait is not None and self.buffer is not None:
            got = self._read_cached(self.nowait, self.buffer[:size], offset)
            if got:
                return bytes(self.buffer[:got])
        return await anyio.to_thread.run_sync(_read_at, self.fd, offset, size)

    def _read_cached(self, flags: int, into: memoryview, offset: int) -> int:
        try:
            return os.preadv(self.fd, [into], offset, flags)
        except BlockingIOError:
            return 0  # not (all) cached: this chunk goes to a thread
        except OSError:
            self.nowait = None  # EOPNOTSUPP and the like: this filesystem cannot, use threads
            return 0


async def _pump(send: Send, fd: int, offset: int, left: int) -> None:
    reader = ChunkReader(fd)
    while left > 0:
        chunk = await reader.read(offset, min(CHUNK, left))
        if not chunk:
            # Truncated under us: the server sees a short body and closes the connection.
            log.warning("static file shrank while being sent (%d bytes missing)", left)
            return
        offset += len(chunk)
        left -= len(chunk)
        await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})


def _read_at(fd: int, offset: int, size: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # one reader per descriptor, so seek+read is safe
    return os.read(fd, size)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
