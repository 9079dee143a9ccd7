"""Proxying WebSockets, in-process: the handshake, buffered frames, close codes, limits."""

from __future__ import annotations

import logging
import re
import struct

import pytest
import trio

from qkhyper.asgi.types import Message
from qkhyper.proxy.bridge import wire_code
from qkhyper.proxy.mock import HANG, MockStream
from tests.proxy.harness import Client, call, make_core, settings, ws_accept, ws_scope

pytestmark = pytest.mark.anyio

CONNECT: Message = {"type": "websocket.connect"}


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A server-to-client frame (unmasked), payload under 64 KiB."""
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        return bytes([first, len(payload)]) + payload
    return bytes([first, 126]) + struct.pack("!H", len(payload)) + payload


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(0x8, struct.pack("!H", code) + reason)


def sent_of(client: Client, kind: str) -> list[Message]:
    return [m for m in client.sent if m["type"] == kind]


def client_frames(written: bytes) -> list[tuple[int, bytes]]:
    """Opcodes and unmasked payloads of the frames the proxy sent after its handshake."""
    data = written[written.index(b"\r\n\r\n") + 4 :]
    frames = []
    while data:
        opcode, size = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if size == 126:
            size, offset = struct.unpack("!H", data[2:4])[0], 4
        mask, payload = data[offset : offset + 4], data[offset + 4 : offset + 4 + size]
        frames.append((opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))))
        data = data[offset + 4 + size :]
    return frames


class Leaving(Client):
    """A WebSocket client that leaves (with `code`) once it has seen `wanted` messages."""

    def __init__(self, wanted: int = 1, code: int = 1000, messages: list[Message] | None = None) -> None:
        super().__init__([CONNECT, *(messages or [])])
        self.wanted = wanted
        self.code = code

    async def receive(self) -> Message:
        if self.messages:
            return self.messages.pop(0)
        while len(sent_of(self, "websocket.send")) < self.wanted:
            await self.received.wait()
            self.received = trio.Event()
        return {"type": "websocket.disconnect", "code": self.code}


async def test_first_message_in_the_same_packet_as_the_101_is_delivered() -> None:
    stream = MockStream([lambda written: ws_accept(written, frame(0x1, b"hello")), HANG])
    core, _backend = make_core([stream])
    client = Leaving()
    await call(core, ws_scope(), client)
    assert [m["type"] for m in client.sent[:2]] == ["websocket.accept", "websocket.send"]
    assert sent_of(client, "websocket.send")[0]["text"] == "hello"
    assert stream.closed


async def test_messages_cross_both_ways() -> None:
    stream = MockStream([lambda w: ws_accept(w), HANG])
    core, _backend = make_core([stream])
    client = Leaving(
        wanted=0,
        messages=[{"type": "websocket.receive", "text": "hi"}, {"type": "websocket.receive", "bytes": b"\x00\x01"}],
    )
    await call(core, ws_scope(), client)
    assert client_frames(stream.written) == [(0x1, b"hi"), (0x2, b"\x00\x01"), (0x8, struct.pack("!H", 1000))]


async def test_fragmented_upstream_message_is_delivered_whole() -> None:
    parts = frame(0x2, b"ab", fin=False) + frame(0x0, b"cd")
    stream = MockStream([lambda w: ws_accept(w), parts, HANG])
    core, _backend = make_core([stream])
    client = Leaving()
    await call(core, ws_scope(), client)
    assert sent_of(client, "websocket.send") == [{"type": "websocket.send", "bytes": b"abcd"}]


async def test_upstream_close_code_and_reason_reach_the_client_and_are_answered() -> None:
    stream = MockStream([lambda w: ws_accept(w, close_frame(4001, b"bye")), HANG])
    core, _backend = make_core([stream])
    client = Client([CONNECT])
    await call(core, ws_scope(), client)
    assert sent_of(client, "websocket.close") == [{"type": "websocket.close", "code": 4001, "reason": "bye"}]
    assert client_frames(stream.written) == [(0x8, struct.pack("!H", 4001) + b"bye")]


@pytest.mark.parametrize(("code", "on_wire"), [(1000, 1000), (1005, 1000), (1006, 1011), (1015, 1011), (4003, 4003)])
async def test_client_close_codes_go_upstream_as_wire_codes(code: int, on_wire: int) -> None:
    stream = MockStream([lambda w: ws_accept(w), HANG])
    core, _backend = make_core([stream])
    client = Leaving(wanted=0, code=code)
    start = trio.current_time()
    await call(core, ws_scope(), client)
    assert client_frames(stream.written) == [(0x8, struct.pack("!H", on_wire))]
    assert trio.current_time() - start <= 1.0  # the upstream that never answers the close gets a second
    assert wire_code(code) == on_wire


async def test_handshake_headers_follow_the_http_policy() -> None:
    stream = MockStream([lambda w: ws_accept(w, close_frame(1000)), HANG])
    core, _backend = make_core([stream])
    headers = [(b"host", b"gw.test"), (b"x-forwarded-host", b"evil.example"), (b"x-forwarded-proto", b"https")]
    await call(core, ws_scope(headers=headers), Client([CONNECT]))
    head = stream.written.split(b"\r\n\r\n")[0].lower()
    assert b"x-forwarded-host: gw.test\r\n" in head and b"evil" not in head
    assert b"x-forwarded-proto: http\r\n" in head and b"\r\nx-forwarded-prefix: /up\r\n" in head
    assert head.startswith(b"get /ws http/1.1\r\n")


async def test_bad_accept_key_is_502() -> None:
    reply = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    stream = MockStream([reply + b"Sec-WebSocket-Accept: d3Jvbmc=\r\n\r\n"])
    core, _backend = make_core([stream])
    client = Client([CONNECT])
    await call(core, ws_scope(), client)
    assert client.status == 502 and client.json["reason"] == "upstream sent a malformed response"
    assert stream.closed


async def test_upstream_refusal_is_relayed() -> None:
    stream = MockStream([b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\nX-Why: token\r\n\r\n", b"denied"])
    core, _backend = make_core([stream])
    client = Client([CONNECT])
    await call(core, ws_scope(), client)
    assert (client.status, client.body, client.headers[b"x-why"]) == (403, b"denied", b"token")
    assert stream.closed


async def test_dead_upstream_is_502_and_silent_one_504() -> None:
    core, backend = make_core([ConnectionRefusedError()])
    refused = Client([CONNECT])
    await call(core, ws_scope(), refused)
    assert refused.status == 502
    core, backend = make_core([MockStream([HANG])], settings(read_timeout=5.0))
    silent = Client([CONNECT])
    await call(core, ws_scope(), silent)
    assert silent.status == 504 and backend.opened[0].closed


async def test_without_the_denial_extension_a_failure_is_a_close() -> None:
    core, _backend = make_core([ConnectionRefusedError()])
    client = Client([CONNECT])
    scope = {**ws_scope(), "extensions": {}}
    await call(core, scope, client)
    assert client.sent == [{"type": "websocket.close", "code": 1011}]


async def test_upstream_message_over_the_limit_closes_both_with_1009() -> None:
    stream = MockStream([lambda w: ws_accept(w), frame(0x1, b"x" * 8, fin=False), frame(0x0, b"y" * 8), HANG])
    core, _backend = make_core([stream], settings(ws_max_message_size=10))
    client = Client([CONNECT])
    await call(core, ws_scope(), client)
    assert sent_of(client, "websocket.send") == []
    assert sent_of(client, "websocket.close")[0]["code"] == 1009
    assert client_frames(stream.written)[0][1][:2] == struct.pack("!H", 1009)


async def test_client_message_over_the_limit_closes_both_with_1009() -> None:
    stream = MockStream([lambda w: ws_accept(w), HANG])
    core, _backend = make_core([stream], settings(ws_max_message_size=10))
    client = Leaving(wanted=0, messages=[{"type": "websocket.receive", "text": "é" * 6}])  # 12 bytes
    await call(core, ws_scope(), client)
    assert sent_of(client, "websocket.close")[0]["code"] == 1009
    assert client_frames(stream.written)[0][1][:2] == struct.pack("!H", 1009)


async def test_upstream_vanishing_is_1011() -> None:
    stream = MockStream([lambda w: ws_accept(w), b""])
    core, _backend = make_core([stream])
    client = Client([CONNECT])
    await call(core, ws_scope(), client)
    assert sent_of(client, "websocket.close")[0]["code"] == 1011


async def test_upstream_ping_is_answered() -> None:
    stream = MockStream([lambda w: ws_accept(w, frame(0x9, b"p") + close_frame(1000)), HANG])
    core, _backend = make_core([stream])
    await call(core, ws_scope(), Client([CONNECT]))
    assert client_frames(stream.written)[0] == (0xA, b"p")


async def test_refusal_body_cut_short_is_not_completed() -> None:
    stream = MockStream([b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nabc", ConnectionResetError()])
    core, _backend = make_core([stream])
    client = Client([CONNECT])
    await call(core, ws_scope(), client)
    assert client.status == 404 and client.body == b"abc" and not client.complete


@pytest.mark.parametrize("host", [b"a..b", b".", b"x" * 64 + b".example"])
async def test_a_host_the_handshake_cannot_carry_is_400(host: bytes) -> None:
    core, backend = make_core([MockStream([HANG])])
    client = Client([CONNECT])
    await call(core, ws_scope(headers=[(b"host", host)]), client)
    assert client.status == 400 and client.json["detail"].startswith("cannot forward this WebSocket handshake")
    assert backend.opened[0].closed


async def test_upstream_text_is_counted_in_bytes() -> None:
    emoji = "\U0001f600" * 3  # 3 characters, 12 bytes
    stream = MockStream([lambda w: ws_accept(w, frame(0x1, emoji.encode())), HANG])
    core, _backend = make_core([stream], settings(ws_max_message_size=10))
    client = Client([CONNECT])
    await call(core, ws_scope(), client)
    assert sent_of(client, "websocket.send") == [] and sent_of(client, "websocket.close")[0]["code"] == 1009


async def test_an_upstream_that_stops_reading_ends_the_session() -> None:
    class NotReading(MockStream):
        async def send(self, data: bytes) -> None:
            if self.sends >= 1:  # takes the handshake, then nothing
                await trio.sleep_forever()
            await super().send(data)

    stream = NotReading([lambda w: ws_accept(w), HANG])
    core, _backend = make_core([stream], settings(send_timeout=20.0))
    client = Client([CONNECT, {"type": "websocket.receive", "text": "hello"}])
    start = trio.current_time()
    await call(core, ws_scope(), client)
    assert sent_of(client, "websocket.close") == [
        {"type": "websocket.close", "code": 1011, "reason": "upstream not reading"}
    ]
    assert stream.closed and 20 <= trio.current_time() - start <= 22


class Pausing(Client):
    """Sends its scripted messages with `pause` seconds of silence before each one after the first."""

    def __init__(self, messages: list[Message], pause: float) -> None:
        super().__init__(messages)
        self.pause = pause
        self.first = True

    async def receive(self) -> Message:
        if not self.first:
            await trio.sleep(self.pause)
        self.first = False
        return self.messages.pop(0)


async def test_a_quiet_session_outlives_send_timeout_both_ways() -> None:
    """send_timeout bounds a send under way, never the silence between messages (each way, 3x over)."""
    stream = MockStream([lambda w: ws_accept(w, frame(0x1, b"one")), HANG])
    core, _backend = make_core([stream], settings(send_timeout=20.0))
    late: list[Message] = [{"type": "websocket.receive", "text": "hi"}, {"type": "websocket.receive", "text": "late"}]
    client = Pausing([CONNECT, *late, {"type": "websocket.disconnect", "code": 1000}], pause=60.0)
    await call(core, ws_scope(), client)
    assert sent_of(client, "websocket.send") == [{"type": "websocket.send", "text": "one"}]
    assert sent_of(client, "websocket.close") == []
    assert client_frames(stream.written) == [(0x1, b"hi"), (0x1, b"late"), (0x8, struct.pack("!H", 1000))]


class SlowClient(Client):
    async def send(self, message: Message) -> None:
        if message["type"] == "websocket.send":
            await trio.sleep_forever()
        await super().send(message)


async def test_a_client_that_stops_reading_ends_the_session() -> None:
    stream = MockStream([lambda w: ws_accept(w, frame(0x1, b"one")), HANG])
    core, _backend = make_core([stream], settings(send_timeout=20.0))
    client = SlowClient([CONNECT])
    start = trio.current_time()
    await call(core, ws_scope(), client)
    assert client_frames(stream.written) == [(0x8, struct.pack("!H", 1001) + b"client not reading")]
    assert stream.closed and 20 <= trio.current_time() - start <= 22


class GoneClient(Client):
    async def send(self, message: Message) -> None:
        if message["type"] == "websocket.send":
            raise ConnectionResetError("client disconnected")  # what uvicorn raises (ClientDisconnected)
        await super().send(message)


async def test_a_client_gone_while_sending_is_no_traceback() -> None:
    stream = MockStream([lambda w: ws_accept(w, frame(0x1, b"one")), HANG])
    core, _backend = make_core([stream])
    await call(core, ws_scope(), GoneClient([CONNECT]))
    assert stream.closed


# --- request IDs -----------------------------------------------------------------------------------


def handshake_ids(written: bytes) -> list[bytes]:
    return re.findall(rb"(?im)^x-request-id: ([^\r\n]*)", written.split(b"\r\n\r\n")[0])


@pytest.mark.parametrize(
    ("sent", "kept"),
    [([(b"x-request-id", b"ws-1")], True), ([(b"x-request-id", b"bad id")], False), ([], False)],
    ids=["kept", "hostile", "none"],
)
async def test_handshake_and_101_carry_the_request_id(sent: list[tuple[bytes, bytes]], kept: bool) -> None:
    trace = (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    stream = MockStream([lambda w: ws_accept(w, close_frame(1000)), HANG])
    core, _backend = make_core([stream])
    client = Client([CONNECT])
    await call(core, ws_scope(headers=[(b"host", b"gw.test"), *sent, trace]), client)
    (chosen,) = handshake_ids(stream.written)
    if kept:
        assert chosen == b"ws-1"
    else:
        assert re.fullmatch(rb"[0-9a-f]{32}", chosen), chosen
    assert b"\r\ntraceparent: " + trace[1] + b"\r\n" in stream.written
    (accept,) = sent_of(client, "websocket.accept")
    assert accept["headers"] == [(b"x-request-id", chosen)]


async def test_refusals_and_failures_carry_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    refusal = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\nX-Request-ID: upstream-own\r\n\r\ndenied"
    core, _backend = make_core([MockStream([refusal]), ConnectionRefusedError(111, "Connection refused")])
    refused, dead = Client([CONNECT]), Client([CONNECT])
    headers = [(b"host", b"gw.test"), (b"x-request-id", b"ws-1")]
    with caplog.at_level(logging.INFO, "qkhyper.proxy"):
        await call(core, ws_scope(headers=headers), refused)
        await call(core, ws_scope(headers=headers), dead)
    start = sent_of(refused, "websocket.http.response.start")[0]
    assert [v for k, v in start["headers"] if k == b"x-request-id"] == [b"ws-1"]
    assert (dead.status, dead.headers[b"x-request-id"], dead.json["request_id"]) == (502, b"ws-1", "ws-1")
    assert [r.getMessage() for r in caplog.records] == [
        "websocket /up/ws -> /up: upstream refused with 403 request_id=ws-1",
        "websocket /up/ws -> /up: connect to up.test:9000 failed: Connection refused request_id=ws-1",
    ]
    assert [r.request_id for r in caplog.records] == ["ws-1", "ws-1"]  # the field of the JSON line


async def test_request_ids_off_leave_the_handshake_alone() -> None:
    stream = MockStream([lambda w: ws_accept(w, close_frame(1000)), HANG])
    core, _backend = make_core([stream], settings(request_id=False))
    client = Client([CONNECT])
    await call(core, ws_scope(headers=[(b"host", b"gw.test"), (b"x-request-id", b"bad id")]), client)
    assert handshake_ids(stream.written) == [b"bad id"]
    (accept,) = sent_of(client, "websocket.accept")
    assert "headers" not in accept


async def test_a_stuck_session_is_logged_with_its_request_id(caplog: pytest.LogCaptureFixture) -> None:
    stream = MockStream([lambda w: ws_accept(w, frame(0x1, b"one")), HANG])
    core, _backend = make_core([stream], settings(send_timeout=20.0))
    with caplog.at_level(logging.WARNING, "qkhyper.proxy"):
        await call(core, ws_scope(headers=[(b"host", b"gw.test"), (b"x-request-id", b"ws-1")]), SlowClient([CONNECT]))
    assert [r.getMessage() for r in caplog.records] == [
        "websocket: the client took nothing for 20 s; closing the session request_id=ws-1"
    ]
    assert caplog.records[0].request_id == "ws-1"
