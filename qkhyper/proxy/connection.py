"""One keep-alive HTTP/1.1 connection to an upstream: an anyio stream driven by h11.

h11 does the protocol (sans-io); this class only moves bytes. Any failure
marks the connection unusable (h11's `send_failed`), so a half-written
connection is never returned to the pool.
"""

from __future__ import annotations

import select
import time

import anyio
import h11

from .backend import NetworkStream, connect

# Bytes read from an upstream at a time; also the largest body chunk sent on.
READ_SIZE = 256 * 1024
# h11 refuses response heads larger than this (its own default is 16 KiB).
MAX_HEAD = 64 * 1024


class UpstreamError(Exception):
    """An upstream failed; `kind` picks the status: refused/protocol/closed -> 502, timeout -> 504."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind

    @property
    def status(self) -> int:
        return 504 if self.kind == "timeout" else 502


Target = tuple[str, int]


class UpstreamConnection:
    def __init__(self, stream: NetworkStream, target: Target) -> None:
        self.stream = stream
        self.target = target
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self.idle_since = time.monotonic()
        self.timed_out = False  # set by the watchdog before it closes the stream
        self.client_left = False  # likewise, when the client disconnected while we waited
        self.closed = False
        self._fd = stream.fileno()

    @classmethod
    async def open(cls, target: Target, timeout: float) -> UpstreamConnection:
        host, port = target
        try:
            with anyio.fail_after(timeout):
                stream = await connect(host, port)
        except TimeoutError:
            raise UpstreamError("timeout", f"connect to {host}:{port} timed out after {timeout:g} s") from None
        except OSError as exc:
            raise UpstreamError("refused", f"connect to {host}:{port} failed: {exc.strerror or exc}") from None
        return cls(stream, target)

    async def send(self, event: h11.Event) -> None:
        try:
            data = self.h11.send(event)
            if data:
                await self.stream.send(data)
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, h11.LocalProtocolError) as exc:
            self.h11.send_failed()
            raise self._failure("closed", f"sending to upstream failed: {exc!r}") from None

    async def next_event(self) -> h11.Event:
        """The next response event, reading from the network only when h11 needs more."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._failure("protocol", f"malformed response from upstream: {exc}") from None
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            try:
                data = await self.stream.receive(READ_SIZE)
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise self._failure("closed", f"upstream connection lost: {exc!r}") from None
            self.h11.receive_data(data)

    def peek(self) -> h11.Event | type[h11.NEED_DATA]:
        """The next event if it is already buffered, without touching the network."""
        try:
            return self.h11.next_event()  # type: ignore[return-value]
        except h11.RemoteProtocolError as exc:
            raise self._failure("protocol", f"malformed response from upstream: {exc}") from None

    def _failure(self, kind: str, detail: str) -> UpstreamError:
        if self.timed_out:
            return UpstreamError("timeout", "upstream did not answer in time")
        if self.client_left:
            return UpstreamError("client_left", "the client disconnected; upstream request abandoned")
        return UpstreamError(kind, detail)

    def reusable(self) -> bool:
        return not self.closed and self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def recycle(self) -> bool:
        """Ready the connection for the next request; False if it cannot be reused."""
        if not self.reusable():
            return False
        self.h11.start_next_cycle()
        self.idle_since = time.monotonic()
        return True

    def peer_closed(self) -> bool:
        """An idle socket that is readable has been closed (or sent junk) by the upstream."""
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        return bool(poller.poll(0))

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self.stream.aclose()
        except (OSError, anyio.BrokenResourceError):
            pass  # already gone, nothing to do
