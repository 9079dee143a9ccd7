"""What a slot needs of a worker, as a Protocol: the seam between supervision and processes.

`ProcessWorker` (process.py) is the real one; tests hand a `Slot` a fake
that answers on cue, so back-off, recycling, the watchdog, rolls and ready
timeouts run in-process under trio's MockClock, in milliseconds.
"""

from __future__ import annotations

import signal
from typing import Protocol

import trio

from .messages import Message
from .plan import Unit


def describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Heartbeat:
    """What a worker reported since it became ready: when it last spoke, and its request count.

    Times are the supervisor's (`trio.current_time()`) at arrival: the
    worker's clock never enters a decision.
    """

    def __init__(self) -> None:
        self.ready_at = 0.0
        self.last = 0.0
        self.requests = 0
        self.became_ready = False
        self._arrived = trio.Event()

    def ready(self, now: float) -> None:
        self.ready_at = self.last = now
        self.became_ready = True

    def beat(self, requests: int, now: float) -> None:
        self.requests = requests
        self.last = now
        self._arrived.set()
        self._arrived = trio.Event()

    async def wait(self, deadline: float) -> None:
        """Return at the next beat, or at `deadline` (trio time)."""
        with trio.move_on_at(deadline):
            await self._arrived.wait()


class Worker(Protocol):
    """One worker of a unit, as the slot sees it."""

    request_limit: int  # the count at which it reports at once, and is recycled (0: none)
    started_at: float  # trio time of spawn
    heartbeat: Heartbeat
    relayed: trio.Event  # set once all of its output was relayed

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def spawn(self, nursery: trio.Nursery) -> None:
        """Start it; helper tasks (output relay, report reader) go into `nursery`."""

    async def ready(self) -> Message | None:
        """Its first report (Ready or Failed), or None when it exited without one. No deadline of its own."""

    async def wait(self) -> int:
        """Its exit code (negative: the signal that killed it)."""

    def kill(self) -> None: ...

    async def stop(self, timeout: float) -> int:
        """Ask it to drain; kill it if it has not exited within `timeout` seconds."""

    async def dump_stack(self, timeout: float) -> None:
        """Have it print every thread's stack, and wait (up to `timeout`) until that reached the log."""

    def rss_mb(self) -> float | None:
        """Its resident memory now, or None where that cannot be read."""


class WorkerFactory(Protocol):
    def __call__(self, unit: Unit, request_limit: int) -> Worker: ...
