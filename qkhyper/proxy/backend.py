"""The only code that touches upstream sockets: a narrow stream seam and its real backends.

The pool gets a `NetworkBackend` in its constructor (httpcore's
`network_backend=`), so tests hand it `mock.MockBackend` and run every retry,
timeout and cleanup branch in-process, with no socket.

The contract every backend keeps, so the connection above it needs no
library-specific `except`:

- `connect_tcp` raises `OSError` when the connection cannot be made, and
  `ssl.SSLError` (an `OSError` too) when, given `tls`, the TLS handshake fails;
  the handshake is part of connecting, so `connect_timeout` bounds it;
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

TLS (https:// targets): `tls` is the route's client context, made once per
worker by `client_context`; the target's host is the name sent as SNI and the
one its certificate is checked against (an IP address is checked against the
certificate's IP entries, and sends no SNI).
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
from collections import deque
from typing import Protocol

import anyio
from anyio.abc import ByteStream, SocketAttribute

from ..config.model import UpstreamTlsSpec

# Stop reading from the socket while this much is buffered and unread.
HIGH_WATER = 1024 * 1024


class NetworkStream(Protocol):
    async def receive(self, max_bytes: int) -> bytes: ...
    async def send(self, data: bytes) -> None: ...
    async def aclose(self) -> None: ...
    def is_readable(self) -> bool: ...


class NetworkBackend(Protocol):
    async def connect_tcp(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> NetworkStream: ...


def client_context(spec: UpstreamTlsSpec) -> ssl.SSLContext:
    """The client context for a route's https:// targets: the system's CAs (or `ca_certs`), names checked.

    `ca_certs` may hold a CA or the upstream's own certificate (a self-signed
    one, or the chain of an app served with TLS): any certificate in it is
    trusted as an anchor (OpenSSL's partial chains, Python 3.13's default).
    `verify` false encrypts without checking who answers.
    """
    context = ssl.create_default_context(cafile=spec.ca_certs or None)
    if spec.ca_certs:
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if not spec.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])  # h11 speaks HTTP/1.1 only
    return context


class AutoBackend:
    """The fastest stream for the running event loop."""

    async def connect_tcp(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> NetworkStream:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: trio
            return await _anyio_connect(host, port, tls)
        if tls is None:
            transport, protocol = await loop.create_connection(_StreamProtocol, host, port)
        else:
            transport, protocol = await loop.create_connection(
                _StreamProtocol, host, port, ssl=tls, server_hostname=host
            )
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


async def _anyio_connect(host: str, port: int, tls: ssl.SSLContext | None) -> AnyioStream:
    if tls is None:
        return AnyioStream(await anyio.connect_tcp(host, port))
    try:
        # Not standard-compatible: upstreams that end without close_notify are common, and h11 frames the body.
        stream = await anyio.connect_tcp(host, port, ssl_context=tls, tls_hostname=host, tls_standard_compatible=False)
    except (anyio.BrokenResourceError, anyio.EndOfStream):
        raise ConnectionResetError("upstream closed the connection during the TLS handshake") from None
    return AnyioStream(stream)


class AnyioStream:
    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self._fd: int = stream.extra(SocketAttribute.raw_socket).fileno()

    async def receive(self, max_bytes: int) -> bytes:
        try:
            return await self.stream.receive(max_bytes)
        except anyio.EndOfStream:
            return b""
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError) as exc:
            raise ConnectionResetError(repr(exc)) from None

    async def send(self, data: bytes) -> None:
        try:
            await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError) as exc:
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
