"""The bytes of one upstream exchange: a request written out, its response read back (sans-io).

Two codecs, one interface (`Codec`), chosen by `[qkhyper.gateway] upstream_parser`:

- `HttptoolsCodec` (the default when `httptools` imports; it comes with
  `qkhyper[uvicorn]`): responses are parsed by llhttp, Node's C parser, and
  request heads are joined from the bytes the proxy already holds. On the
  gateway's hot path h11's pure-Python parser and serialiser were the largest
  part of the proxy's own cost (issue 13's profile).
- `H11Codec`: h11's client state machine, as the proxy always used; the
  fallback when httptools is absent, and the reference the tests compare with.

Both speak h11's vocabulary, so the rest of the proxy does not know which one
runs: they return `h11.InformationalResponse`, `h11.Response`, `h11.Data`,
`h11.EndOfMessage` or `h11.NEED_DATA`, raise `h11.RemoteProtocolError` for a
response they cannot read and `h11.LocalProtocolError` for a request body that
does not match its head, and say whether the connection may carry another
exchange (`reusable`). The framing rules are SPEC §4's, whichever parser runs
(tests/proxy/test_codec.py runs every case on both):

- Content-Length together with Transfer-Encoding, two different lengths, or a
  transfer coding other than `chunked`: unreadable (a smuggling risk, RFC 9112
  §6.1; h11 and llhttp both refuse the first two, the third is refused here so
  a `gzip`-coded body is never passed on as if it were plain).
- A body cut short (end of stream before Content-Length bytes or the last
  chunk): unreadable at end of stream, which the connection reports as a close.
- 1xx responses (100 Continue, 103 Early Hints) come before the final one; an
  unasked 101 is unreadable (the proxy never asks plain HTTP to switch).
- No body after HEAD, 1xx, 204 and 304, whatever the headers say; bytes after
  the end of a response (a body longer than its length) make the connection
  unusable, never the next request's answer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

import h11
from h11._headers import Headers  # built directly: the parser already split and lowercased each name

from .protocol import RequestHead

try:
    import httptools
except ImportError:  # qkhyper without the uvicorn extra: h11 only
    httptools = None  # type: ignore[assignment]

Event = h11.Event | type[h11.NEED_DATA]

_NO_BODY = frozenset({204, 304})


class Codec(Protocol):
    """What `UpstreamConnection` needs from a parser: see the module docstring."""

    def request(self, head: RequestHead) -> bytes:
        """The request head's bytes; starts an exchange. The target was checked (`RequestHead.check_target`)."""

    def body(self, data: bytes) -> bytes:
        """A body chunk as framed on the wire. Raises `h11.LocalProtocolError` past Content-Length."""

    def end(self) -> bytes:
        """The end of the body. Raises `h11.LocalProtocolError` short of Content-Length."""

    def send_failed(self) -> None:
        """Writing failed: the exchange can never complete, so the connection is not reusable."""

    def receive_data(self, data: bytes) -> None:
        """Bytes from the upstream; `b""` is the end of the stream."""

    def next_event(self) -> Event:
        """The next response event, or `h11.NEED_DATA`. Raises `h11.RemoteProtocolError`."""

    def awaiting_head(self) -> bool:
        """The final response head has not (completely) arrived yet."""

    def reusable(self) -> bool:
        """The exchange ended cleanly on both sides, with nothing after it: the connection may be reused."""

    def start_next_cycle(self) -> None:
        """Forget the finished exchange; only after `reusable()`."""


def codec_class(upstream_parser: str) -> CodecFactory:
    """The codec for `upstream_parser` (config/model.py `UPSTREAM_PARSERS`; `auto`: httptools when it imports).

    The config check refuses `httptools` when it is not installed and any other
    name, so an unknown one cannot reach here from a config.
    """
    if upstream_parser == "h11" or httptools is None:
        return H11Codec
    return HttptoolsCodec


CodecFactory = Callable[[int], Codec]
"""A codec class: called with the largest response head to accept."""


class H11Codec:
    """h11's client connection: the reference implementation of every rule above."""

    __slots__ = ("h11",)

    def __init__(self, max_head: int) -> None:
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head)

    def request(self, head: RequestHead) -> bytes:
        return self.h11.send(head.event()) or b""

    def body(self, data: bytes) -> bytes:
        return self.h11.send(h11.Data(data=data)) or b""

    def end(self) -> bytes:
        return self.h11.send(h11.EndOfMessage()) or b""

    def send_failed(self) -> None:
        self.h11.send_failed()

    def receive_data(self, data: bytes) -> None:
        self.h11.receive_data(data)

    def next_event(self) -> Event:
        return self.h11.next_event()  # type: ignore[return-value]  # PAUSED never comes: one exchange at a time

    def awaiting_head(self) -> bool:
        return self.h11.their_state is h11.SEND_RESPONSE

    def reusable(self) -> bool:
        # trailing_data: bytes after the end of the response (a 204 with a body, a body
        # longer than its Content-Length) would be read as the next client's response.
        # trailing_data[1]: the upstream ended the stream (a body that ran until the close).
        h = self.h11
        return h.our_state is h11.DONE and h.their_state is h11.DONE and h.trailing_data == (b"", False)

    def start_next_cycle(self) -> None:
        self.h11.start_next_cycle()


class HttptoolsCodec:
    """llhttp (through httptools) for responses, joined bytes for requests.

    httptools is callback-driven: `feed_data` calls the `on_*` methods below,
    which queue h11 events for `next_event`. A fresh parser per exchange keeps
    the states simple: nothing of one response can leak into the next.

    Two things llhttp cannot be told through httptools are done here: that the
    request was HEAD (so the response has no body whatever its Content-Length
    says; the bytes are fed only up to the end of each head), and that the
    stream ended (a body that runs until close ends there; any other body is
    then cut short).
    """

    __slots__ = (
        "_chunked",
        "_chunked_out",
        "_close",
        "_error",
        "_events",
        "_fed",
        "_head_only",
        "_headers",
        "_keep_alive",
        "_length",
        "_length_left",
        "_max_head",
        "_parser",
        "_pending",
        "_reason",
        "_trailing",
        "_until_close",
        "done",
        "failed",
        "in_head",
        "sent_end",
    )

    def __init__(self, max_head: int) -> None:
        self._max_head = max_head
        self._reset()

    def _reset(self) -> None:
        assert httptools is not None
        self._parser = httptools.HttpResponseParser(self)
        self._events: deque[h11.Event] = deque()
        self._error: str | None = None
        self._headers: list[tuple[bytes, bytes, bytes]] = []
        self._reason = b""
        self._fed = 0  # bytes of the current head fed so far (MAX_HEAD)
        self._keep_alive = True
        self._chunked = False
        self._close = False  # Connection: close
        self._length: bytes | None = None
        self._until_close = False  # no length, not chunked: the body ends with the stream
        self._trailing = False  # bytes after the end of the response
        self._head_only = False  # a HEAD request: no body follows the head
        self._pending = b""  # HEAD only: bytes not fed yet (beyond the end of a head)
        self._chunked_out = False
        self._length_left = 0
        self.in_head = True  # until the final (non-1xx) head is complete
        self.done = False  # the response ended
        self.failed = False
        self.sent_end = False

    # -- the request ---------------------------------------------------------

    def request(self, head: RequestHead) -> bytes:
        self._head_only = head.method == b"HEAD"
        self._chunked_out = head.chunked
        self._length_left = head.length or 0
        return head.wire()

    def body(self, data: bytes) -> bytes:
        if self._chunked_out:
            return b"%x\r\n%b\r\n" % (len(data), data) if data else b""
        self._length_left -= len(data)
        if self._length_left < 0:
            self.failed = True
            raise h11.LocalProtocolError("Too much data for declared Content-Length")
        return data

    def end(self) -> bytes:
        self.sent_end = True
        if self._chunked_out:
            return b"0\r\n\r\n"
        if self._length_left:
            self.failed = True
            raise h11.LocalProtocolError("Too little data for declared Content-Length")
        return b""

    def send_failed(self) -> None:
        self.failed = True

    # -- the response --------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self._error is not None or self._trailing:
            return
        if not data:
            self._eof()
            return
        if self._head_only:
            self._feed_heads(data)
            return
        if self.in_head:
            self._fed += len(data)
        self._feed(data)
        if self.in_head and self._fed > self._max_head and self._error is None:
            self._error = f"response head over {self._max_head} bytes"

    def _feed(self, data: bytes) -> None:
        assert httptools is not None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.done:
                self._trailing = True  # garbage after the end: the response stands, the connection goes
            elif self._error is None:
                self._error = str(exc) or type(exc).__name__

    def _feed_heads(self, data: bytes) -> None:
        """HEAD: feed each head up to its blank line, never past the final one."""
        pending = self._pending + data
        while self.in_head and self._error is None:
            end = pending.find(b"\r\n\r\n")
            if end < 0:
                if len(pending) > self._max_head:
                    self._error = f"response head over {self._max_head} bytes"
                self._pending = pending
                return
            self._feed(pending[: end + 4])
            pending = pending[end + 4 :]
        self._pending = b""
        if not self.in_head and self._error is None and not self.done:
            self._finish()
        if pending:
            self._trailing = True

    def _eof(self) -> None:
        if self.done:
            return
        if not self.in_head and self._until_close:
            self._finish()  # RFC 9112 §6.3 (8): the close is the end
        elif not self.in_head:
            self._error = "the body ended early"
        # Mid-head: the connection sees awaiting_head() and reports the close itself.

    def next_event(self) -> Event:
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            raise h11.RemoteProtocolError(self._error)
        return h11.NEED_DATA

    def awaiting_head(self) -> bool:
        return self.in_head

    def reusable(self) -> bool:
        return (
            self.done
            and not self._events  # the response was read to its end, not only parsed
            and self.sent_end
            and self._keep_alive
            and not self._until_close
            and not self._trailing
            and not self.failed
            and self._error is None
        )

    def start_next_cycle(self) -> None:
        self._reset()

    def _finish(self) -> None:
        self.done = True
        self._events.append(h11.EndOfMessage())

    # -- llhttp's callbacks ----------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:
            self._trailing = True  # a second response, or garbage, after the end of this one
        self._headers = []
        self._reason = b""

    def on_status(self, reason: bytes) -> None:
        self._reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            return  # trailers after a chunked body: not passed on (as with h11)
        if value and value[-1] in (0x20, 0x09):
            value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace; RFC 9110 §5.5 does not
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            if self._chunked or value.lower() != b"chunked":
                self._error = f"unsupported Transfer-Encoding {value!r}"
            self._chunked = True
            value = b"chunked"
        elif lowered == b"content-length":
            self._length = value
        elif lowered == b"connection" and b"close" in value.lower():
            self._close = True
        self._headers.append((name, lowered, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if self._error is not None:
            return  # a framing header was refused: no event for this head
        if status == 101:
            self._error = "upstream switched protocols (101) unasked"
            return
        headers = Headers(self._headers)
        if status < 200:
            event = h11.InformationalResponse(status_code=status, headers=headers, reason=self._reason, _parsed=True)
            self._events.append(event)
            self._chunked, self._length = False, None
            self._fed = 0
            return
        self.in_head = False
        version = b"1.1" if parser.get_http_version() == "1.1" else b"1.0"
        # llhttp counts a head without length as a body until the close; after HEAD there is no body.
        self._keep_alive = parser.should_keep_alive() or (self._head_only and version == b"1.1" and not self._close)
        self._events.append(
            h11.Response(status_code=status, headers=headers, reason=self._reason, http_version=version, _parsed=True)
        )
        bodiless = self._head_only or status in _NO_BODY
        self._until_close = not bodiless and not self._chunked and self._length is None

    def on_body(self, body: bytes) -> None:
        if self._error is None:
            self._events.append(h11.Data(data=body))

    def on_message_complete(self) -> None:
        if not self.in_head and not self.done:
            self._finish()
