"""Fake workers for in-process slot tests: they start, beat, hang and exit on cue, on trio's clock.

Under `MockClock(autojump_threshold=0)` the clock jumps to the next deadline
whenever every task waits, so a 60 s watchdog or a 30 s back-off costs
nothing. Every fake records what happened to it in its factory's `events`,
with the (virtual) time, so a test asserts the order: ready before drained.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
import trio.testing

from qkhyper.supervisor.messages import Failed, Message, Ready
from qkhyper.supervisor.plan import Unit
from qkhyper.supervisor.worker import Heartbeat

KILLED = -9


@dataclass
class Start:
    """How one spawned worker behaves."""

    seconds: float = 1.0  # from spawn to its first report
    outcome: str = "ready"  # ready | fail | die | never
    error: str = "app 'probe': lifespan startup failed: RuntimeError: database unreachable"
    exits_after: float = 0.5  # after a failed start, or a SIGTERM: how long until it exits by itself
    ignores_term: bool = False  # a drain that never ends


@dataclass
class Event:
    at: float
    what: str  # spawn, ready, failed, STACK, TERM, KILL, exit
    pid: int


@dataclass
class FakeFactory:
    """Makes FakeWorkers (implements `WorkerFactory`); `starts` scripts them in spawn order."""

    starts: list[Start] = field(default_factory=list)
    workers: list[FakeWorker] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    _pids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _changed: trio.Event = field(default_factory=trio.Event)

    def __call__(self, unit: Unit, request_limit: int) -> FakeWorker:
        start = self.starts.pop(0) if self.starts else Start()
        worker = FakeWorker(self, next(self._pids), unit.child.beat_interval, request_limit, start)
        self.workers.append(worker)
        return worker

    def record(self, what: str, pid: int) -> None:
        self.events.append(Event(trio.current_time(), what, pid))
        self._changed.set()
        self._changed = trio.Event()

    def seen(self, what: str, pid: int | None = None) -> list[Event]:
        return [e for e in self.events if e.what == what and pid in (None, e.pid)]

    async def until(self, check: Callable[[], bool]) -> None:
        """Wait until `check()` holds once everything has settled (the test's fail_after bounds it).

        Checked whenever no task can move at this instant, then again after the
        next event: the slot acts on an event after it was recorded.
        """
        while True:
            await trio.testing.wait_all_tasks_blocked()
            if check():
                return
            await self._changed.wait()


class FakeWorker:
    def __init__(self, factory: FakeFactory, pid: int, beat_interval: float, request_limit: int, start: Start) -> None:
        self.factory = factory
        self.pid = pid
        self.beat_interval = beat_interval
        self.request_limit = request_limit
        self.start = start
        self.started_at = 0.0
        self.heartbeat = Heartbeat()
        self.relayed = trio.Event()
        self.returncode: int | None = None
        self.requests = 0
        self.rss: float | None = 60.0
        self.hung = False  # its "event loop" is blocked: no more beats
        self.dumps_stack = True
        self._first: Message | None = None
        self._answered = trio.Event()
        self._exited = trio.Event()
        self._life = trio.CancelScope()

    async def spawn(self, nursery: trio.Nursery) -> None:
        self.started_at = trio.current_time()
        self.factory.record("spawn", self.pid)
        nursery.start_soon(self._live)

    async def _live(self) -> None:
        with self._life:
            await trio.sleep(self.start.seconds)
            if self.start.outcome == "never":
                await trio.sleep_forever()
            if self.start.outcome == "die":
                self._exit(3)
                return
            if self.start.outcome == "fail":
                self._answer(Failed(self.start.error), "failed")
                await trio.sleep(self.start.exits_after)
                self._exit(1)
                return
            self.heartbeat.ready(trio.current_time())
            self._answer(Ready(self.pid), "ready")
            while True:
                await trio.sleep(self.beat_interval or math.inf)
                if not self.hung:
                    self.heartbeat.beat(self.requests, trio.current_time())

    def _answer(self, message: Message, what: str) -> None:
        self._first = message
        self._answered.set()
        self.factory.record(what, self.pid)

    def _exit(self, code: int) -> None:
        if self.returncode is not None:
            return
        self.returncode = code
        self._life.cancel()
        self._answered.set()
        self._exited.set()
        self.relayed.set()
        self.factory.record("exit", self.pid)

    # What a test does to it.

    def serve(self, requests: int) -> None:
        """Count requests the way the worker does: report at once on reaching its limit."""
        for _ in range(requests):
            self.requests += 1
            if self.requests == self.request_limit:
                self.heartbeat.beat(self.requests, trio.current_time())

    def crash(self, code: int = 3) -> None:
        self._exit(code)

    # The Worker protocol, as the slot uses it.

    async def ready(self) -> Message | None:
        await self._answered.wait()
        return self._first

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            self.factory.record("KILL", self.pid)
            self._exit(KILLED)

    async def stop(self, timeout: float) -> int:
        self.factory.record("TERM", self.pid)
        with trio.move_on_after(timeout):
            if self.start.ignores_term:
                await trio.sleep_forever()
            await trio.sleep(self.start.exits_after)
            self._exit(0)
            return 0
        self.kill()
        return KILLED

    async def dump_stack(self, timeout: float) -> None:
        self.factory.record("STACK", self.pid)
        if not self.dumps_stack:
            await trio.sleep(timeout)

    def rss_mb(self) -> float | None:
        return self.rss

    @property
    def exited(self) -> bool:
        return self.returncode is not None
