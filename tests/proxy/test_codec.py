"""The codecs on their own, bytes in and events out: every framing rule of SPEC §4, with each parser.

conftest.py runs each case with h11 and with httptools; the expected events
are the same, so the two cannot drift apart unseen.
"""

from __future__ import annotations

import h11
import pytest

from qkhyper.proxy.codec import Codec, H11Codec, HttptoolsCodec, codec_class
from qkhyper.proxy.protocol import RequestHead
from tests.proxy.harness import codec

GET = RequestHead(b"GET", b"/x", [(b"host", b"up")], 0, False)
HEAD = RequestHead(b"HEAD", b"/x", [(b"host", b"up")], 0, False)
MAX_HEAD = 1024


def started(request: RequestHead = GET) -> Codec:
    wire = codec()(MAX_HEAD)
    wire.request(request)
    wire.end()
    return wire


def read(wire: Codec, *packets: bytes) -> list[object]:
    """Feed `packets` (b"" is the end of the stream) and summarise every event until NEED_DATA or the end."""
    seen: list[object] = []
    for packet in packets:
        wire.receive_data(packet)
        while True:
            try:
                event = wire.next_event()
            except h11.RemoteProtocolError:
                seen.append("unreadable")
                return seen
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                break
            seen.append(_summary(event))
            if isinstance(event, h11.EndOfMessage):
                return seen
    return seen


def _summary(event: object) -> object:
    if isinstance(event, (h11.Response, h11.InformationalResponse)):
        return (event.status_code, [(bytes(k), bytes(v)) for k, v in event.headers], bytes(event.reason))
    if isinstance(event, h11.Data):
        return bytes(event.data)
    return type(event).__name__


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CL2 = [(b"content-length", b"2")]
CHUNKED = [(b"transfer-encoding", b"chunked")]


@pytest.mark.parametrize(
    ("packets", "events", "reusable"),
    [
        ([OK], [(200, CL2, b"OK"), b"ok", "EndOfMessage"], True),
        ([OK[:20], OK[20:30], OK[30:]], [(200, CL2, b"OK"), b"ok", "EndOfMessage"], True),
        (
            [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n", b"1\r\nc\r\n0\r\n\r\n"],
            [(200, CHUNKED, b"OK"), b"ab", b"c", "EndOfMessage"],
            True,
        ),
        (  # trailers end the body and are not passed on
            [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T: 1\r\n\r\n"],
            [(200, CHUNKED, b"OK"), b"a", "EndOfMessage"],
            True,
        ),
        (  # no length, not chunked: the body runs until the close, and the connection goes
            [b"HTTP/1.1 200 OK\r\n\r\nsome", b" more", b""],
            [(200, [], b"OK"), b"some", b" more", "EndOfMessage"],
            False,
        ),
        ([OK[:-1], b""], [(200, CL2, b"OK"), b"o", "unreadable"], False),  # cut short
        (
            [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", b""],
            [(200, CHUNKED, b"OK"), b"ab", "unreadable"],
            False,
        ),
        (
            [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK],
            [
                (100, [], b"Continue"),
                (103, [(b"link", b"</a.css>")], b"Early Hints"),
                (200, CL2, b"OK"),
                b"ok",
                "EndOfMessage",
            ],
            True,
        ),
        ([b"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\n"], [(204, CL2, b"No Content"), "EndOfMessage"], True),
        ([b"HTTP/1.1 304 Not Modified\r\n\r\n"], [(304, [], b"Not Modified"), "EndOfMessage"], True),
        # Bytes after the end (a 204 with a body, a body over its length): the answer stands, the connection goes.
        (
            [b"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\nok"],
            [(204, CL2, b"No Content"), "EndOfMessage"],
            False,
        ),
        ([OK + b"HTTP/1.1 200 OK\r\n"], [(200, CL2, b"OK"), b"ok", "EndOfMessage"], False),
        ([OK + b"garbage\r\n\r\n"], [(200, CL2, b"OK"), b"ok", "EndOfMessage"], False),
        ([b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"], [(200, CL2, b"OK"), b"ok", "EndOfMessage"], False),
        (
            [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"],
            [(200, [(b"connection", b"close"), *CL2], b"OK"), b"ok", "EndOfMessage"],
            False,
        ),
        (  # optional whitespace around a value is not part of it (RFC 9110 §5.5)
            [b"HTTP/1.1 200 OK\r\nX-A:  v \t\r\nContent-Length: 0\r\n\r\n"],
            [(200, [(b"x-a", b"v"), (b"content-length", b"0")], b"OK"), "EndOfMessage"],
            True,
        ),
        (
            [b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"],
            [(200, [(b"content-length", b"0")], b""), "EndOfMessage"],
            True,
        ),
        ([b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"], ["unreadable"], False),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok"], ["unreadable"], False),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"], ["unreadable"], False),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"], ["unreadable"], False),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"], ["unreadable"], False),
        ([b"SPDY/3 200 OK\r\n\r\n"], ["unreadable"], False),
        ([b"HTTP/1.1 2000 OK\r\n\r\n"], ["unreadable"], False),
        ([b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 2000], ["unreadable"], False),  # a head over MAX_HEAD
    ],
)
def test_responses(packets: list[bytes], events: list[object], reusable: bool) -> None:
    wire = started()
    assert read(wire, *packets) == events
    assert wire.reusable() is reusable


@pytest.mark.parametrize(
    ("packets", "events", "reusable"),
    [
        # HEAD: no body follows, whatever Content-Length or Transfer-Encoding says.
        (
            [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"],
            [(200, [(b"content-length", b"5")], b"OK"), "EndOfMessage"],
            True,
        ),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"], [(200, CHUNKED, b"OK"), "EndOfMessage"], True),
        ([b"HTTP/1.1 200 OK\r\n\r\n"], [(200, [], b"OK"), "EndOfMessage"], True),
        (
            [b"HTTP/1.1 200 OK\r\nContent-", b"Length: 5\r", b"\n\r\n"],
            [(200, [(b"content-length", b"5")], b"OK"), "EndOfMessage"],
            True,
        ),
        (
            [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"],
            [(100, [], b"Continue"), (200, [(b"content-length", b"5")], b"OK"), "EndOfMessage"],
            True,
        ),
        # A body sent anyway would be read as the next request's answer.
        (
            [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"],
            [(200, [(b"content-length", b"5")], b"OK"), "EndOfMessage"],
            False,
        ),
        ([b"HTTP/1.1 200 OK\r\nX: " + b"a" * 2000], ["unreadable"], False),
    ],
)
def test_responses_to_head(packets: list[bytes], events: list[object], reusable: bool) -> None:
    wire = started(HEAD)
    assert read(wire, *packets) == events
    assert wire.reusable() is reusable


def test_a_response_parsed_but_not_yet_read_is_not_reusable() -> None:
    wire = started()
    wire.receive_data(OK)
    assert not wire.reusable()
    assert [_summary(wire.next_event()) for _ in range(3)] == [(200, CL2, b"OK"), b"ok", "EndOfMessage"]
    assert wire.reusable()


def test_a_connection_serves_one_exchange_after_another() -> None:
    wire = started()
    assert read(wire, OK)[-1] == "EndOfMessage"
    wire.start_next_cycle()
    wire.request(GET)
    wire.end()
    assert read(wire, b"HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\n!") == [
        (201, [(b"content-length", b"1")], b"Created"),
        b"!",
        "EndOfMessage",
    ]
    assert wire.reusable()


def test_the_end_of_the_stream_mid_head_leaves_the_close_to_the_connection() -> None:
    wire = started()
    wire.receive_data(b"HTTP/1.1 200 OK\r\n")
    assert wire.awaiting_head()
    assert wire.next_event() is h11.NEED_DATA
    wire.receive_data(b"Content-Length: 0\r\n\r\n")
    assert wire.next_event() is not h11.NEED_DATA and not wire.awaiting_head()


def test_an_informational_response_still_awaits_the_head() -> None:
    wire = started()
    wire.receive_data(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert isinstance(wire.next_event(), h11.InformationalResponse) and wire.awaiting_head()


def test_request_heads_and_bodies_on_the_wire() -> None:
    wire = codec()(MAX_HEAD)
    head = RequestHead(b"POST", b"/a%2Fb?q=1", [(b"host", b"up"), (b"content-length", b"5")], 5, False)
    assert wire.request(head) == b"POST /a%2Fb?q=1 HTTP/1.1\r\nhost: up\r\ncontent-length: 5\r\n\r\n"
    assert wire.body(b"he") + wire.body(b"") + wire.body(b"llo") + wire.end() == b"hello"
    chunked = codec()(MAX_HEAD)
    chunked.request(RequestHead(b"POST", b"/", [(b"host", b"up"), (b"transfer-encoding", b"chunked")], None, True))
    assert chunked.body(b"hello") + chunked.body(b"") + chunked.body(b"!" * 16) + chunked.end() == (
        b"5\r\nhello\r\n10\r\n" + b"!" * 16 + b"\r\n0\r\n\r\n"
    )


@pytest.mark.parametrize(("chunks", "message"), [([b"toolong"], "Too much data"), ([b"abc"], "Too little data")])
def test_a_body_that_does_not_match_its_length_is_refused(chunks: list[bytes], message: str) -> None:
    wire = codec()(MAX_HEAD)
    wire.request(RequestHead(b"POST", b"/", [(b"host", b"up"), (b"content-length", b"5")], 5, False))
    with pytest.raises(h11.LocalProtocolError, match=message):
        for chunk in chunks:
            wire.body(chunk)
        wire.end()
    wire.receive_data(OK)
    assert not wire.reusable()  # whatever the upstream answers


def test_a_failed_send_is_never_reused() -> None:
    wire = codec()(MAX_HEAD)
    wire.request(GET)
    wire.send_failed()
    wire.receive_data(OK)
    while not isinstance(wire.next_event(), h11.EndOfMessage):
        pass
    assert not wire.reusable()


def test_auto_means_httptools_when_it_is_installed() -> None:
    assert codec_class("auto") is HttptoolsCodec
    assert codec_class("httptools") is HttptoolsCodec
    assert codec_class("h11") is H11Codec


def test_obsolete_line_folding_is_joined_or_refused(upstream_parser: str) -> None:
    """RFC 9112 §5.2: a proxy replaces obs-fold with a space (h11) or answers 502 (llhttp)."""
    wire = started()
    events = read(wire, b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n")
    joined = [(200, [(b"x", b"a b"), (b"content-length", b"0")], b"OK"), "EndOfMessage"]
    assert events == {"h11": joined, "httptools": ["unreadable"]}[upstream_parser]
