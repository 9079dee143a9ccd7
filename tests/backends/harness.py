"""Drive the servers' protocol objects in-process: bytes in, bytes out, no socket.

uvicorn's protocols are `asyncio.Protocol`s, fed through a fake transport (as
uvicorn's own tests do); Hypercorn's `H11Protocol` is fed `RawData` events and
its output collected from its `send` callable, inside Hypercorn's own asyncio
task group and worker context. Every exchange ends when the server closes
the connection, with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.h11 import H2CProtocolRequiredError
from hypercorn.typing import ConnectionState
from uvicorn.server import ServerState

from qkhyper.backends.hypercorn import AsyncioAlarm
from qkhyper.backends.hypercorn_h11 import Edge, EdgeH11Protocol
from qkhyper.backends.uvicorn import with_limits
from qkhyper.config.model import EdgeLimits

DEADLINE = 10.0


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with what it was handed: method, path and raw_path."""
    if scope["type"] != "http":
        return
    body = json.dumps(
        {"method": scope["method"], "path": scope["path"], "raw_path": scope["raw_path"].decode("latin-1")}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = asyncio.Event()
        self.protocol: asyncio.Protocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            assert self.protocol is not None
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed.is_set()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol  # type: ignore[assignment]


def uvicorn_protocol(base: type[asyncio.Protocol], limits: EdgeLimits) -> tuple[asyncio.Protocol, FakeTransport]:
    """A connected uvicorn protocol of class `base` bound to `limits`, as uvicorn's server builds one."""
    config = uvicorn.Config(
        echo, http=with_limits(base, limits), lifespan="off", h11_max_incomplete_event_size=limits.max_header_size
    )
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
    transport = FakeTransport()
    transport.protocol = protocol
    protocol.connection_made(transport)
    return protocol, transport


async def uvicorn_exchange(base: type[asyncio.Protocol], limits: EdgeLimits, *chunks: bytes) -> bytes:
    """Feed `chunks` (each one read) and return all the server wrote until it closed."""
    protocol, transport = uvicorn_protocol(base, limits)
    for chunk in chunks:
        if not transport.is_closing():
            protocol.data_received(chunk)
    await asyncio.wait_for(transport.closed.wait(), DEADLINE)
    return bytes(transport.written)


def hypercorn_protocol(
    limits: EdgeLimits,
    config: Config,
    context: WorkerContext,
    task_group: TaskGroup,
    send: Callable[[Event], Awaitable[None]],
) -> EdgeH11Protocol:
    """qkhyper's Hypercorn protocol bound to `limits`, serving `echo`, as Hypercorn's TCP server builds one."""

    class Configured(EdgeH11Protocol):
        edge = Edge(limits, AsyncioAlarm)

    peer, local = ("127.0.0.1", 40000), ("127.0.0.1", 8000)
    state = ConnectionState({})
    return Configured(ASGIWrapper(echo), config, context, task_group, state, False, peer, local, send)


async def hypercorn_exchange(limits: EdgeLimits, *chunks: bytes, record: list[Event] | None = None) -> bytes:
    """The same with qkhyper's Hypercorn protocol: returns all it sent until it asked for a close.

    `record`, if given, receives every event the protocol sent to its server.
    """
    config = Config()
    config.h11_max_incomplete_size = limits.max_header_size
    written = bytearray()
    closed = asyncio.Event()

    async def send(event: Event) -> None:
        if record is not None:
            record.append(event)
        if isinstance(event, RawData):
            written.extend(event.data)
        elif isinstance(event, Closed):
            closed.set()

    async with TaskGroup(asyncio.get_running_loop()) as task_group:
        protocol = hypercorn_protocol(limits, config, WorkerContext(None), task_group, send)
        await protocol.initiate()
        try:
            for chunk in chunks:
                if not closed.is_set():
                    await protocol.handle(RawData(chunk))
        except H2CProtocolRequiredError:
            closed.set()  # Hypercorn's ProtocolWrapper would switch to HTTP/2 here
        await asyncio.wait_for(closed.wait(), DEADLINE)
        await protocol.handle(Closed())  # as the TCP server does: stops the header clock
    return bytes(written)


def statuses(output: bytes) -> list[int]:
    """Status codes of every response in `output` (no body here contains a status line)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3})", output)]


def body_of(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[2]


def head_of_size(size: int, path: bytes = b"/echo") -> bytes:
    """A GET (Connection: close) whose request line and header lines are exactly `size` bytes."""
    start = b"GET " + path + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
    filler = size - len(start) - len(b"X-Fill: \r\n\r\n")
    return start + b"X-Fill: " + b"f" * filler + b"\r\n\r\n"


def with_headers(count: int, path: bytes = b"/echo", *, close: bool = True) -> bytes:
    """A GET with exactly `count` header lines (`close`: one of them is `Connection: close`)."""
    lines = [b"Host: a", b"Connection: close" if close else b"Accept: */*"]
    lines += [b"X-H%d: %d" % (i, i) for i in range(count - 2)]
    return b"GET " + path + b" HTTP/1.1\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
CL_TE = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
H2C = (
    b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
)
