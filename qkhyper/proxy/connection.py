"""One keep-alive HTTP/1.1 connection to an upstream: a network stream driven by a codec.

The codec (`codec.py`: llhttp through httptools, or h11) does the protocol,
sans-io; this class moves bytes and turns every way the exchange can fail into
one `errors` class, at the point it is detected:

- the stream breaks, or ends, before a byte of the response arrived:
  `UpstreamClosed(before_response=True)`, the case a retry may cover
  (h11 alone would call that end of stream a protocol error);
- it breaks or ends later: `UpstreamClosed`;
- the codec cannot read what arrived: `MalformedResponse`;
- someone else (the watchdog) gave up on the exchange: `abort(exc)` records
  why, closes the stream, and the blocked reader raises that `exc`.

A connection goes back to the pool only when the codec says the exchange ended
cleanly on both sides (`recycle`); any failure leaves it unusable, so a
half-used connection is never reused (httpcore's `_response_closed`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import anyio
import h11

from ..config.model import Address
from .backend import NetworkStream
from .codec import Codec, CodecFactory, H11Codec
from .errors import BadRequest, MalformedResponse, ProxyError, UpstreamClosed
from .protocol import RequestHead

# Bytes read from an upstream at a time; also the largest body chunk sent on.
READ_SIZE = 256 * 1024
# The largest response head taken from an upstream (h11's own default is 16 KiB).
# The codecs enforce it only on a head still incomplete; a complete one that arrived
# in a single read (up to READ_SIZE) is measured in `next_event`.
MAX_HEAD = 64 * 1024


def head_size(event: h11.Response) -> int:
    """Bytes of a response head: status line and header lines with their CRLFs, and the blank line."""
    return 17 + len(event.reason) + sum(len(name) + len(value) + 4 for name, value in event.headers.raw_items())


class UpstreamConnection:
    def __init__(
        self,
        stream: NetworkStream,
        target: Address,
        on_close: Callable[[], None] | None = None,
        key: Hashable | None = None,
        codec: CodecFactory = H11Codec,
    ) -> None:
        self.stream = stream
        self.target = target
        self.key = target if key is None else key  # what the pool keeps it under: the target, or with TLS
        self.on_close = on_close  # the pool's count of open connections (metrics)
        self.codec: Codec = codec(MAX_HEAD)
        self.idle_since = 0.0  # when it last went back to the pool
        self.failure: ProxyError | None = None  # why abort() ended the exchange
        self.wrote = False  # a byte of the current request reached the stream
        self.heard = 0  # bytes of the current response read so far
        self.eof = False  # the upstream ended its side of the stream
        self.closed = False

    async def send_head(self, head: RequestHead) -> None:
        """Send the request head (starts an exchange).

        Raises:
            UpstreamClosed: the connection broke; nothing more can be sent.
            BadRequest: a target that cannot be sent.
        """
        await self._write(self.codec.request(head))

    async def send_body(self, data: bytes) -> None:
        """Send a chunk of the request body.

        Raises:
            UpstreamClosed: the connection broke; nothing more can be sent.
            BadRequest: the body is longer than the head's Content-Length.
        """
        await self._write(self._framed(data))

    async def send_end(self) -> None:
        """End the request body.

        Raises:
            UpstreamClosed: the connection broke.
            BadRequest: the body is shorter than the head's Content-Length.
        """
        await self._write(self._framed(None))

    def _framed(self, data: bytes | None) -> bytes:
        """The codec's bytes for a body chunk, or for the body's end (None)."""
        try:
            return self.codec.end() if data is None else self.codec.body(data)
        except h11.LocalProtocolError as exc:  # the ASGI server delivered a body its head did not announce
            raise self._failed(BadRequest(f"request body does not match its Content-Length: {exc}")) from None

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            await self.stream.send(data)
        except ConnectionError as exc:
            self.codec.send_failed()
            raise self._failed(self._closed(f"sending to upstream failed: {exc!r}")) from None
        self.wrote = True

    async def next_event(self) -> h11.Event:
        """The next response event, reading from the network only when the codec needs more.

        Raises:
            UpstreamClosed, MalformedResponse, or whatever `abort` was given.
        """
        while True:
            if self.failure is not None:
                raise self.failure
            try:
                event = self.codec.next_event()  # peek(), inlined: this is the hot path
            except h11.RemoteProtocolError as exc:
                raise self._unreadable(exc) from None
            if event is not h11.NEED_DATA:
                if self.heard > MAX_HEAD and type(event) is h11.Response and head_size(event) > MAX_HEAD:
                    raise self._failed(MalformedResponse(f"response head of {head_size(event)} bytes, over {MAX_HEAD}"))
                return event  # type: ignore[return-value]
            try:
                data = await self.stream.receive(READ_SIZE)
            except ConnectionError as exc:
                raise self._failed(self._closed(f"upstream connection lost: {exc!r}")) from None
            if not data and self.codec.awaiting_head():
                # h11 reports this as a protocol error; it is a close, and maybe a retry.
                where = "in the middle of the response head" if self.heard else "without a response"
                raise self._failed(self._closed(f"upstream closed the connection {where}"))
            self.eof = not data
            self.heard += len(data)
            self.codec.receive_data(data)

    def peek(self) -> h11.Event | type[h11.NEED_DATA]:
        """The next event if it is already buffered, without touching the network.

        Raises:
            MalformedResponse: the codec cannot parse what arrived (a truncated body: `UpstreamClosed`).
        """
        if self.failure is not None:
            raise self.failure
        try:
            return self.codec.next_event()
        except h11.RemoteProtocolError as exc:
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: h11.RemoteProtocolError) -> ProxyError:
        if self.eof:  # only a body can end early here: next_event saw the head's end
            return self._failed(UpstreamClosed(f"upstream closed in the middle of the body ({exc})"))
        return self._failed(MalformedResponse(f"malformed response from upstream: {exc}"))

    def _closed(self, message: str) -> UpstreamClosed:
        return UpstreamClosed(message, before_response=not self.heard)

    def _failed(self, exc: ProxyError) -> ProxyError:
        """The error to raise: the watchdog's reason if it ended the exchange, else `exc`.

        There is nothing to mark: after any failure the codec no longer calls
        the exchange complete, so `recycle` refuses the connection.
        """
        return self.failure or exc

    async def abort(self, reason: ProxyError) -> None:
        """End the exchange from outside (a deadline, the client leaving): the reader raises `reason`."""
        if self.failure is None:
            self.failure = reason
        await self.aclose()

    def recycle(self, now: float) -> bool:
        """Ready the connection for the next request; False if it cannot be reused."""
        if self.closed or not self.codec.reusable():
            return False
        self.codec.start_next_cycle()
        self.idle_since = now
        self.wrote = False
        self.heard = 0
        return True

    async def aclose(self) -> None:
        """Close the stream; shielded, so a cancelled exchange still lets go of its socket."""
        if not self.closed:
            self.closed = True
            if self.on_close is not None:
                self.on_close()
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()
