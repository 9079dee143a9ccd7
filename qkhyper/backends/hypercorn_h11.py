"""Hypercorn's HTTP/1.1 protocol with qkhyper's edge limits.

`hypercorn.protocol.ProtocolWrapper` builds its HTTP/1.1 protocol from the
module global `H11Protocol`; `install` points that name at a subclass, in the
worker process only (a worker serves one config). What the subclass changes:

- **Header timeout.** Hypercorn has one clock for a connection waiting for a
  request: `keep_alive_timeout`, from "waiting" until the head is complete.
  uvicorn's keep-alive clock stops at the first byte instead, so the two
  servers gave a slow head different deadlines. Here, as in qkhyper's uvicorn
  protocols, `keep_alive_timeout` stops at a request's first byte and
  `header_timeout` runs from "waiting" (accepted, or a keep-alive cycle
  begun) until the head is complete: 408 and close if part of a head had
  arrived, a plain close if nothing had. The deadline is an `Alarm` (a timer
  handle on asyncio), not a task per request, and it is armed only when it
  can matter: while no byte has arrived, Hypercorn's keep-alive clock runs,
  and when that is not longer than `header_timeout` it closes the connection
  first. So, as uvicorn's `HeadClock`, a head that arrives in one read costs
  a clock reading, not a timer set and cancelled; a head in pieces arms the
  alarm at its first byte for what is left of `header_timeout`.
- **Keep-alive clock.** Hypercorn runs it as a task (`AsyncioSingleTask`),
  cancelled at every request and started again after every response: about
  12 % of a small static response's instructions. Where the worker's context
  can close idle connections itself when the worker stops (qkhyper's
  asyncio `DelayedEvent`, backends/hypercorn.py), it is an `Alarm` here
  instead: a timer set after a response and cancelled at the next request,
  closing the connection after `keep_alive_timeout` as Hypercorn's task does,
  and at once when the worker stops. Hypercorn's own task still covers the
  wait from accept to the first request; elsewhere (trio) it is unchanged.
- **Head size and CL+TE.** `LimitedConnection` measures complete heads too
  (h11 alone checks only incomplete ones) and refuses Content-Length with
  Transfer-Encoding before any app runs.
- **h2c.** `Upgrade: h2c` is served as HTTP/1.1 unless `h2c` is enabled:
  Hypercorn answers it with 101 and hands the connection's HTTP/2 streams to
  the app, past any path rule of a proxy in front. (Prior-knowledge HTTP/2,
  `PRI * HTTP/2.0`, stays as Hypercorn has it: an HTTP/1.1 proxy never
  forwards that preface.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, cast

import h11
import hypercorn.protocol
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.typing import TaskGroup

from ..config.model import EdgeLimits
from .guards import require
from .heads import REQUEST_TIMEOUT, LimitedConnection, require_h11


class IdleRegistry(Protocol):
    """A worker context's `terminated` event that closes the idle connections listed in `idle` when set."""

    idle: set[EdgeH11Protocol]

    def is_set(self) -> bool: ...


class Alarm(Protocol):
    """A connection's one deadline: `set` (re)arms it to run `ring` after `timeout` seconds."""

    def set(self, timeout: float, ring: Callable[[], Awaitable[None]]) -> None: ...

    def cancel(self) -> None: ...

    def now(self) -> float:
        """The clock `timeout` counts on, in seconds."""
        ...


# Makes a connection's alarm in its task group; given by the worker class (asyncio or trio).
AlarmFactory = Callable[[TaskGroup], Alarm]

# What EdgeH11Protocol overrides or calls, with the parameters it expects.
OVERRIDES = {
    "__init__": "self app config context task_group connection_state ssl client server send".split(),
    "initiate": ["self"],
    "handle": ["self", "event"],
    "_check_protocol": ["self", "event"],
    "_maybe_recycle": ["self"],
}


@dataclass(frozen=True, slots=True)
class Edge:
    limits: EdgeLimits
    alarm: AlarmFactory


def asks_h2c(request: h11.Request) -> bool:
    return any(
        name.lower() == b"upgrade" and value.strip().lower() == b"h2c" for name, value in request.headers.raw_items()
    )


class EdgeH11Protocol(H11Protocol):
    edge: ClassVar[Edge]  # set by `install`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = self.edge.limits
        self.connection = LimitedConnection(self.limits.max_header_size)
        self.alarm = self.edge.alarm(self.task_group)
        self.waiting = False  # for a request head, with the header timeout running
        self.head_started = False  # a byte of that head arrived
        self.since = 0.0  # when the waiting began, on the alarm's clock
        self.armed = False  # the alarm is set (else the keep-alive clock covers the wait)
        # Hypercorn's keep-alive clock runs while nothing has arrived; not longer than the
        # header timeout, it closes an idle connection first and the alarm can wait.
        self.covered = self.config.keep_alive_timeout <= self.limits.header_timeout
        self.closed = False
        self.server_send = self.send
        self.registry: IdleRegistry | None = None
        terminated = self.context.terminated
        if isinstance(getattr(terminated, "idle", None), set):
            self.registry = cast(IdleRegistry, terminated)
            self.keep_alive = self.edge.alarm(self.task_group)
            self.keep_alive_armed = False
            self.server_idle = True  # Hypercorn's idle task, started at accept, runs until the first request
            self.send = self._send

    async def initiate(self) -> None:
        await super().initiate()
        self._start_waiting(head_started=False)

    async def handle(self, event: Event) -> None:
        if type(event) is Closed:  # exact types: Event is an ABC, and isinstance on it is slow
            await super().handle(event)
            self.closed = True
            self._stop_waiting()
            self._keep_alive_stop()
            return
        if type(event) is RawData and event.data and self.waiting and not self.head_started:
            self.head_started = True
            # The keep-alive clock (the TCP server's idle task) stops at a request's first
            # byte, as uvicorn's does; from here the header timeout alone bounds the head.
            # A head that is complete in this read is parsed at once, and Hypercorn then
            # stops the clock itself: telling it twice would cost a task stop per request.
            if b"\r\n\r\n" not in event.data:
                await self.send(Updated(idle=False))
                self._arm()  # the keep-alive clock stopped: from here the alarm bounds the head
        await super().handle(event)

    async def _check_protocol(self, event: h11.Request) -> None:
        self._stop_waiting()  # called for every complete head, before anything else
        # h2c off: skip Hypercorn's check, which does nothing else but prior-knowledge HTTP/2.
        if self.limits.h2c or (event.method == b"PRI" and not asks_h2c(event)):
            await super()._check_protocol(event)

    async def _maybe_recycle(self) -> None:
        # Armed before Hypercorn starts the next cycle, which may parse a pipelined head at once.
        self._start_waiting(head_started=bool(self.connection.trailing_data[0]))
        await super()._maybe_recycle()
        if self.connection.our_state is not h11.IDLE:  # closed, or a pipelined request began
            self._stop_waiting()
        elif self.waiting and self.head_started:  # part of the next head came with the last request
            await self.send(Updated(idle=False))

    def _start_waiting(self, head_started: bool) -> None:
        if not self.closed:
            self._stop_waiting()
            self.waiting = True
            self.head_started = head_started
            self.since = self.alarm.now()
            if head_started or not self.covered:
                self._arm()

    def _arm(self) -> None:
        """Set the alarm for what is left of the header timeout since the waiting began."""
        self.armed = True
        left = self.since + self.limits.header_timeout - self.alarm.now()
        self.alarm.set(max(left, 0.0), self._head_timed_out)

    def _stop_waiting(self) -> None:
        self.waiting = False
        if self.armed:
            self.armed = False
            self.alarm.cancel()

    async def _send(self, event: Event) -> None:
        """`send` to the TCP server when the keep-alive clock is kept here: Updated events stay here."""
        if type(event) is not Updated:
            await self.server_send(event)
        elif event.idle:
            self._keep_alive_start()
        else:
            self._keep_alive_stop()
            if self.server_idle:  # the first request: stop the task Hypercorn started at accept
                self.server_idle = False
                await self.server_send(event)

    def _keep_alive_start(self) -> None:
        registry = self.registry
        if registry is None or self.closed:
            return
        registry.idle.add(self)
        self.keep_alive_armed = True
        # Already stopping: at once, as Hypercorn's idle task would.
        timeout = 0.0 if registry.is_set() else self.config.keep_alive_timeout
        self.keep_alive.set(timeout, self._idle_close)

    def _keep_alive_stop(self) -> None:
        if self.registry is not None and self.keep_alive_armed:
            self.keep_alive_armed = False
            self.keep_alive.cancel()
            self.registry.idle.discard(self)

    def worker_stopping(self) -> None:
        """The worker stops (`terminated` is set): close this idle connection now."""
        if self.keep_alive_armed:
            self.keep_alive.set(0.0, self._idle_close)

    async def _idle_close(self) -> None:
        """keep_alive_timeout passed with no request, or the worker stops: as Hypercorn's `_idle_timeout`."""
        if self.registry is not None:
            self.registry.idle.discard(self)
        self.keep_alive_armed = False
        if self.closed:
            return
        await self.handle(Closed())
        await self.server_send(Closed())

    async def _head_timed_out(self) -> None:
        if not self.waiting or self.closed:
            return
        self.waiting = False
        if self.head_started:
            await self.send(RawData(REQUEST_TIMEOUT))
        await self.send(Closed())


def install(limits: EdgeLimits, alarm: AlarmFactory) -> None:
    """Make Hypercorn build `EdgeH11Protocol`s with `limits` (in this worker process).

    Raises:
        TypeError: Hypercorn's H11Protocol no longer matches OVERRIDES, or h11 moved.
    """
    require(H11Protocol, OVERRIDES)
    require_h11()

    class Configured(EdgeH11Protocol):
        edge = Edge(limits, alarm)

    hypercorn.protocol.H11Protocol = Configured  # type: ignore[attr-defined]
