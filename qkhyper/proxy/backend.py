"""The only code that touches upstream sockets: a narrow stream seam and its real backends.

The pool gets a `NetworkBackend` in its constructor (httpcore's
`network_backend=`), so tests hand it `mock.MockBackend` and run every retry,
timeout and cleanup branch in-process, with no socket.

The contract every backend keeps, so the connection above it needs no
library-specific `except`:

- `connect_tcp` raises `OSError` when the connection cannot be made;
- `receive` returns `b""` at end of stream and raises `ConnectionError` when
  the connection was reset, or closed by this side (`aclose`);
- `send` raises `ConnectionError` when the connection is broken or closed;
- `is_readable` on an idle connection means the upstream closed it (or sent
  bytes nobody asked for): either way it cannot be reused.

On asyncio/uvloop (the default worker classes) a plain `asyncio.Protocol` is
used. anyio's asyncio `SocketStream` yields to the event loop after every
write and pauses/resumes reading (two epoll changes) around every read; on the
proxy's hot path that was a measurable share of each request. Under trio, the
anyio stream is used, with its errors mapped to the contract above.
"""

from __future__ import annotations

import asyncio
import select
import socket
from collections import deque
from typing import Protocol

import anyio
from anyio.abc import SocketAttribute, SocketStream

# Stop reading from the socket while this much is buffered and unread.
HIGH_WATER = 1024 * 1024


class NetworkStream(Protocol):
    async def receive(self, max_bytes: int) -> bytes: ...
    async def send(self, data: bytes) -> None: ...
    async def aclose(self) -> None: ...
    def is_readable(self) -> bool: ...


class NetworkBackend(Protocol):
    async def connect_tcp(self, host: str, port: int) -> NetworkStream: ...


class AutoBackend:
    """The fastest stream for the running event loop."""

    async def connect_tcp(self, host: str, port: int) -> NetworkStream:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: trio
            return AnyioStream(await anyio.connect_tcp(host, port))
        transport, protocol = await loop.create_connection(_StreamProtocol, host, port)
        sock: socket.socket = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return AsyncioStream(transport, protocol)


class _StreamProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.error: Exception | None = None
        self.reader: asyncio.Future[None] | None = None
        self.writer: asyncio.Future[None] | None = None
        self.write_paused = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close the transport: an upstream that stops sending is done

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake_reader()
        self.resume_writing()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.writer is not None and not self.writer.done():
            self.writer.set_result(None)

    def _wake_reader(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)


class AsyncioStream:
    def __init__(self, transport: asyncio.Transport, protocol: _StreamProtocol) -> None:
        self.transport = transport
        self.protocol = protocol
        self.closed = False

    async def receive(self, max_bytes: int) -> bytes:
        protocol = self.protocol
        while not protocol.chunks or self.closed:
            if self.closed:
                raise ConnectionAbortedError("connection closed by the proxy")
            if protocol.eof:
                if protocol.error is not None:
                    raise ConnectionResetError(str(protocol.error))
                return b""
            protocol.reader = asyncio.get_running_loop().create_future()
            await protocol.reader
        chunk = protocol.chunks.popleft()
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            protocol.chunks.appendleft(rest)
        was_high = protocol.buffered > HIGH_WATER
        protocol.buffered -= len(chunk)
        if was_high and protocol.buffered <= HIGH_WATER:
            self.transport.resume_reading()
        return chunk

    async def send(self, data: bytes) -> None:
        if self.closed or self.transport.is_closing():
            raise BrokenPipeError("upstream connection is closed")
        self.transport.write(data)
        if self.protocol.write_paused:  # back-pressure: wait until the kernel took it
            self.protocol.writer = asyncio.get_running_loop().create_future()
            await self.protocol.writer

    async def aclose(self) -> None:
        self.closed = True
        self.transport.abort()
        self.protocol._wake_reader()

    def is_readable(self) -> bool:
        # The event loop has already delivered whatever arrived: no system call needed.
        return bool(self.protocol.chunks) or self.protocol.eof


class AnyioStream:
    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self._fd: int = stream.extra(SocketAttribute.raw_socket).fileno()

    async def receive(self, max_bytes: int) -> bytes:
        try:
            return await self.stream.receive(max_bytes)
        except anyio.EndOfStream:
            return b""
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise ConnectionResetError(repr(exc)) from None

    async def send(self, data: bytes) -> None:
        try:
            await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise BrokenPipeError(repr(exc)) from None

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.stream.aclose()
            except OSError:
                pass  # already gone, nothing to do

    def is_readable(self) -> bool:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        return bool(poller.poll(0))
