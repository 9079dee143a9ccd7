"""Hypercorn's HTTP/1.1 protocol with qkhyper's edge limits.

`hypercorn.protocol.ProtocolWrapper` builds its HTTP/1.1 protocol from the
module global `H11Protocol`; `install` points that name at a subclass, in the
worker process only (a worker serves one config). What the subclass changes:

- **Header timeout.** Hypercorn has one clock for a connection waiting for a
  request: `keep_alive_timeout`, from "waiting" until the head is complete.
  uvicorn's keep-alive clock stops at the first byte instead, so the two
  servers gave a slow head different deadlines. Here, as in qkhyper's uvicorn
  protocols, `keep_alive_timeout` stops at a request's first byte and
  `header_timeout` runs from "waiting" until the head is complete (408 and
  close if part of a head had arrived, a plain close if nothing had).
- **Head size.** `LimitedConnection` also measures complete heads (h11 alone
  checks only incomplete ones).
- **h2c.** `Upgrade: h2c` is served as HTTP/1.1 unless `h2c` is enabled:
  Hypercorn answers it with 101 and hands the connection's HTTP/2 streams to
  the app, past any path rule of a proxy in front.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
import hypercorn.protocol
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.typing import Event as HypercornEvent

from ..config.model import EdgeLimits
from .guards import require
from .heads import REQUEST_TIMEOUT, LimitedConnection

# Waits for an event with a deadline: True when the deadline passed first.
# Given by the worker class (asyncio or trio), as Hypercorn itself has no such helper.
Waiter = Callable[[HypercornEvent, float], Awaitable[bool]]


# What EdgeH11Protocol overrides or calls, with the parameters it expects.
OVERRIDES = {
    "__init__": "self app config context task_group connection_state ssl client server send".split(),
    "initiate": ["self"],
    "handle": ["self", "event"],
    "_check_protocol": ["self", "event"],
}


@dataclass(frozen=True, slots=True)
class Edge:
    limits: EdgeLimits
    wait: Waiter


def asks_h2c(request: h11.Request) -> bool:
    return any(name == b"upgrade" and value.strip().lower() == b"h2c" for name, value in request.headers)


class EdgeH11Protocol(H11Protocol):
    edge: ClassVar[Edge]  # set by `install`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = self.edge.limits
        self.connection = LimitedConnection(self.limits.max_header_size)
        self.server_send = self.send  # the TCP server's; ours sees what the protocol tells it
        self.send = self._send
        self.head_timer = self.context.single_task_class()
        self.waiting = False  # for a request head, with the header timeout running
        self.head_started = False  # a byte of that head arrived

    async def initiate(self) -> None:
        await super().initiate()
        await self._start_waiting()

    async def handle(self, event: Event) -> None:
        if isinstance(event, RawData) and event.data and self.waiting and not self.head_started:
            self.head_started = True
            # The keep-alive clock stops at a request's first byte, as uvicorn's does;
            # from here the header timeout alone bounds the head.
            await self.server_send(Updated(idle=False))
        elif isinstance(event, Closed):
            await self._stop_waiting()
        await super().handle(event)

    async def _send(self, event: Event) -> None:
        # Updated(idle=True): a new cycle began, waiting for the next head;
        # Updated(idle=False): the head is complete.
        if isinstance(event, Updated) and event.idle:
            await self.server_send(event)
            await self._start_waiting()
            if self.connection.trailing_data[0]:  # part of the next head came with the last request
                self.head_started = True
                await self.server_send(Updated(idle=False))
            return
        if isinstance(event, (Updated, Closed)):
            await self._stop_waiting()
        await self.server_send(event)

    async def _check_protocol(self, event: h11.Request) -> None:
        if not self.limits.h2c and asks_h2c(event):
            return  # served as HTTP/1.1; a gateway drops Upgrade as hop-by-hop
        await super()._check_protocol(event)

    async def _start_waiting(self) -> None:
        self.waiting = True
        self.head_started = False
        await self.head_timer.restart(self.task_group, self._head_deadline)

    async def _stop_waiting(self) -> None:
        if self.waiting:
            self.waiting = False
            await self.head_timer.stop()

    async def _head_deadline(self) -> None:
        timed_out = await self.edge.wait(self.context.terminated, self.limits.header_timeout)
        # A shutdown closes idle connections through Hypercorn's keep-alive task;
        # a connection in the middle of a head has none left, so it is closed here.
        if not self.waiting or not (timed_out or self.head_started):
            return
        self.waiting = False  # before Closed comes back through handle(): no self-cancel
        if timed_out and self.head_started:
            await self.server_send(RawData(REQUEST_TIMEOUT))
        await self.server_send(Closed())


def install(limits: EdgeLimits, wait: Waiter) -> None:
    """Make Hypercorn build `EdgeH11Protocol`s with `limits` (in this worker process).

    Raises:
        TypeError: Hypercorn's H11Protocol no longer matches OVERRIDES.
    """
    require(H11Protocol, OVERRIDES)

    class Configured(EdgeH11Protocol):
        edge = Edge(limits, wait)

    hypercorn.protocol.H11Protocol = Configured  # type: ignore[attr-defined]
