"""A scripted in-memory network backend (httpcore's `_backends/mock.py`, for this seam).

`MockBackend([MockStream([...]), ...])` hands out one scripted stream per
connection, in order; each stream replays its script to `receive` and records
what the proxy sent. It produces what a real server cannot be made to do on
cue: a reset between two requests, a close that the idle check misses, a 101
with frames in the same packet, a stall that only a clock can end. Tests run
it under trio's `MockClock`, so timeouts cost no real time.
"""

from __future__ import annotations

import ssl
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final

import anyio
import anyio.lowlevel


class _Hang:
    def __repr__(self) -> str:
        return "HANG"


HANG: Final = _Hang()
"""In a script: block until the stream is closed (a silent upstream)."""

Reply = Callable[[bytes], bytes]
"""In a script: bytes computed from everything the proxy has sent so far (a WebSocket accept key)."""
Step = bytes | BaseException | _Hang | Reply


class MockStream:
    """One upstream connection.

    Args:
        script: what successive `receive` calls get: bytes (`b""` is end of
            stream), an exception to raise, `HANG`, or a function of all bytes
            sent so far that returns the bytes to receive. After the script, every
            `receive` hangs, as a keep-alive server waiting for a request does.
        hide_eof: `is_readable` says False even when the next step is an end of
            stream or an error: the upstream's close is still on its way, as in
            the race the retry rule exists for.
        fail_send_at: the index of the `send` call that raises `BrokenPipeError`
            (0: the very first, so no byte is written).
    """

    def __init__(self, script: Iterable[Step] = (), *, hide_eof: bool = False, fail_send_at: int | None = None) -> None:
        self.script: deque[Step] = deque(script)
        self.hide_eof = hide_eof
        self.fail_send_at = fail_send_at
        self.sent: list[bytes] = []
        self.sends = 0
        self.closed = False
        self._closed = anyio.Event()

    @property
    def written(self) -> bytes:
        return b"".join(self.sent)

    async def receive(self, max_bytes: int) -> bytes:
        await anyio.lowlevel.checkpoint()
        if self.closed:
            raise ConnectionAbortedError("closed by the proxy")
        step = self.script.popleft() if self.script else HANG
        if isinstance(step, _Hang):
            await self._closed.wait()
            raise ConnectionAbortedError("closed by the proxy")
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            step = step(self.written)
        if len(step) > max_bytes:
            step, rest = step[:max_bytes], step[max_bytes:]
            self.script.appendleft(rest)
        return step

    async def send(self, data: bytes) -> None:
        await anyio.lowlevel.checkpoint()
        index = self.sends
        self.sends += 1
        if self.closed or index == self.fail_send_at:
            raise BrokenPipeError("upstream connection is broken")
        self.sent.append(data)

    async def aclose(self) -> None:
        await anyio.lowlevel.checkpoint()  # a real close may wait, and so be cancelled
        self.closed = True
        self._closed.set()

    def is_readable(self) -> bool:
        """True once the stream is closed, or when the next step is an end of stream or an error.

        Scripted bytes are the answer to the *next* request, so they are not
        readable yet; `hide_eof` keeps a close unseen, as if still in flight.
        """
        if self.closed:
            return True
        if self.hide_eof or not self.script:
            return False
        step = self.script[0]
        return step == b"" or isinstance(step, BaseException)


class MockBackend:
    """Hands out `streams` one per connection; an exception in the list is raised by that connect.

    `connects` records every (host, port) asked for, in order, and `tls` the
    TLS context of each (None: plain). A scripted `ssl.SSLError` (e.g.
    `ssl.SSLCertVerificationError`) is a failed handshake.
    """

    def __init__(self, streams: Iterable[MockStream | BaseException | _Hang]) -> None:
        self.streams: deque[MockStream | BaseException | _Hang] = deque(streams)
        self.connects: list[tuple[str, int]] = []
        self.tls: list[ssl.SSLContext | None] = []
        self.opened: list[MockStream] = []

    async def connect_tcp(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> MockStream:
        await anyio.lowlevel.checkpoint()
        self.connects.append((host, port))
        self.tls.append(tls)
        if not self.streams:
            raise ConnectionRefusedError(f"no scripted connection left for {host}:{port}")
        item = self.streams.popleft()
        if isinstance(item, _Hang):
            await anyio.sleep_forever()
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, MockStream)
        self.opened.append(item)
        return item
