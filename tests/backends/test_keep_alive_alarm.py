"""qkhyper's Hypercorn protocol keeps the keep-alive clock between requests as an alarm (hypercorn_h11).

What must hold, as with Hypercorn's own idle task: a connection idle after a
response is closed after `keep_alive_timeout`, a request in time is served,
and a worker that stops closes its idle connections at once. Hypercorn's task
still sees the first request's Updated(idle=False) (it runs from accept);
no Updated(idle=True) reaches it.
"""

from __future__ import annotations

import asyncio

from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.worker_context import EventWrapper, WorkerContext
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData, Updated

from qkhyper.backends.hypercorn_h11 import EdgeH11Protocol
from qkhyper.config.model import EdgeLimits
from tests.backends.harness import DEADLINE, hypercorn_protocol, statuses

REQUEST = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
# No header timeout within a test's time: it would close a waiting connection too, and hide what the
# keep-alive clock does (or fails to do).
LIMITS = EdgeLimits(header_timeout=3600.0)


class Stopping(EventWrapper):
    """As qkhyper's DelayedEvent (backends/hypercorn.py): tells the idle connections when set."""

    def __init__(self) -> None:
        super().__init__()
        self.idle: set[EdgeH11Protocol] = set()

    async def set(self) -> None:
        self._event.set()
        for connection in list(self.idle):
            connection.worker_stopping()


async def exchange(
    keep_alive: float, chunks: list[bytes], *, stop: bool = False, registry: bool = True
) -> tuple[bytes, list[Event], bool]:
    """Feed `chunks`; then stop the worker if asked. Returns the output, the events sent, and whether it closed."""

    config = Config()
    config.keep_alive_timeout = keep_alive
    context = WorkerContext(None)
    if registry:
        context.terminated = Stopping()
    written = bytearray()
    events: list[Event] = []
    closed = asyncio.Event()

    async def send(event: Event) -> None:
        events.append(event)
        if isinstance(event, RawData):
            written.extend(event.data)
        elif isinstance(event, Closed):
            closed.set()

    async def idle_after(count: int, protocol: EdgeH11Protocol) -> None:
        """Until `count` responses were sent and the connection waits for the next request, within DEADLINE.

        Waiting: the protocol's keep-alive alarm is armed (with the registry), or
        Hypercorn was told `Updated(idle=True)` once per response (without).
        """

        def idle() -> bool:
            if registry:
                return protocol in context.terminated.idle  # type: ignore[attr-defined]
            return updates(events).count(True) >= count

        async with asyncio.timeout(DEADLINE):
            while len(statuses(bytes(written))) < count or not idle():
                await asyncio.sleep(0)  # lets the app's task and the protocol run

    async with TaskGroup(asyncio.get_running_loop()) as task_group:
        protocol = hypercorn_protocol(LIMITS, config, context, task_group, send)
        await protocol.initiate()
        for sent, chunk in enumerate(chunks, 1):
            await protocol.handle(RawData(chunk))
            await idle_after(sent, protocol)  # answered, and waiting for the next request
        if stop:
            await context.terminated.set()
        try:
            await asyncio.wait_for(closed.wait(), 0.3 if keep_alive > 1 and not stop else DEADLINE)
        except TimeoutError:
            pass
        is_closed = closed.is_set()
        await protocol.handle(Closed())  # as the TCP server does
        if registry:
            assert not context.terminated.idle, "a closed connection stayed registered as idle"
    return bytes(written), events, is_closed


def updates(events: list[Event]) -> list[bool]:
    return [event.idle for event in events if isinstance(event, Updated)]


def test_idle_connection_is_closed_after_keep_alive_timeout() -> None:
    output, events, closed = asyncio.run(exchange(0.05, [REQUEST]))
    assert statuses(output) == [200]
    assert closed, "keep_alive_timeout did not close a connection idle after a response"
    assert updates(events) == [False], "Hypercorn's idle task must only be stopped, at the first request"


def test_requests_in_time_keep_the_connection() -> None:
    output, events, closed = asyncio.run(exchange(60, [REQUEST, REQUEST, REQUEST]))
    assert statuses(output) == [200, 200, 200]
    assert not closed
    assert updates(events) == [False]


def test_a_stopping_worker_closes_idle_connections_at_once() -> None:
    output, _, closed = asyncio.run(exchange(60, [REQUEST], stop=True))
    assert statuses(output) == [200]
    assert closed, "an idle keep-alive connection stayed open after the worker began to stop"


def test_without_the_registry_hypercorn_keeps_its_clock() -> None:
    """A context that cannot tell idle connections (trio, or the patch did not apply): every Updated goes through."""
    output, events, _ = asyncio.run(exchange(60, [REQUEST, REQUEST], registry=False))
    assert statuses(output) == [200, 200]
    assert updates(events) == [False, True, False, True]
