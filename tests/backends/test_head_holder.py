"""uvicorn's response head and its first body chunk in one send (backends/uvicorn_httptools.HeadHolder)."""

from __future__ import annotations

import asyncio
from typing import Any

from qkhyper.backends.uvicorn_httptools import HeadHolder


class Recording:
    """A transport that records each call that would be a send."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sends.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        self.sends.append(b"".join(parts))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def holder() -> tuple[HeadHolder, Recording, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    transport = Recording()
    return HeadHolder(transport, loop), transport, loop  # type: ignore[arg-type]


def next_turn(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def test_head_and_body_written_in_one_turn_are_one_send() -> None:
    held, transport, loop = holder()
    held.expect_response()
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert transport.sends == []
    held.write(b"body")
    assert transport.sends == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    held.write(b"more")  # only the first write of a response waits
    assert transport.sends[-1] == b"more"
    next_turn(loop)  # the scheduled flush finds nothing held
    assert len(transport.sends) == 2
    loop.close()


def test_a_head_alone_goes_out_at_the_next_turn_of_the_loop() -> None:
    held, transport, loop = holder()
    held.expect_response()
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")  # a stream whose first chunk comes later
    next_turn(loop)
    assert transport.sends == [b"HTTP/1.1 200 OK\r\n\r\n"]
    held.write(b"data: 1\n\n")
    assert transport.sends[-1] == b"data: 1\n\n"
    loop.close()


def test_close_sends_what_is_held_first() -> None:
    held, transport, loop = holder()
    held.expect_response()
    held.write(b"head")
    held.close()
    assert transport.sends == [b"head"] and transport.closed
    loop.close()


def test_each_response_holds_its_own_first_write() -> None:
    held, transport, loop = holder()
    for n in range(2):
        held.expect_response()
        held.write(b"head%d" % n)
        held.write(b"body%d" % n)
    assert transport.sends == [b"head0body0", b"head1body1"]
    assert held.get_extra_info("peername") == "info:peername"  # the rest is the transport's
    loop.close()
