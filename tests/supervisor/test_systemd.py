"""The whole supervisor in-process, with fake workers, a recording notifier and signals fed by hand, on MockClock.

What systemd hears and when: READY=1 once the ready table is out, RELOADING=1
and READY=1 around a SIGHUP roll, STOPPING=1 before any worker is asked to
drain, STATUS= on change, and WATCHDOG=1 every half interval only while
every slot is healthy. Real processes and a real socket: test_sdnotify.py.
"""

from __future__ import annotations

import io
import logging
import math
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from qkhyper.config.model import WorkerLimits
from qkhyper.errors import AppStartupError
from qkhyper.logs import LabelWriter
from qkhyper.supervisor.plan import AppRef, ChildSpec, ServePlan, Unit
from qkhyper.supervisor.policy import beat_interval
from qkhyper.supervisor.run import Supervisor, Systemd
from qkhyper.supervisor.systemd import monotonic_usec
from qkhyper.supervisor.worker import Worker
from tests.supervisor.fakes import FakeFactory, FakeWorker, Start

pytestmark = pytest.mark.anyio

DEADLINE = 100_000  # virtual seconds
QUIET = WorkerLimits(worker_timeout=0)  # no heartbeats: fewer events to wade through


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


def make_unit(label: str, workers: int = 1, limits: WorkerLimits = QUIET) -> Unit:
    child = ChildSpec(
        label,
        [AppRef(label, "x:app", "")],
        "",
        "hypercorn",
        "asyncio",
        {},
        [],
        60.0,
        "local",
        beat_interval=beat_interval(limits),
    )
    return Unit(label, [label], "127.0.0.1", 0, workers, child, limits=limits)


@dataclass
class Sent:
    at: float
    message: str
    output: str  # what the supervisor had written to its log stream when this was sent


@dataclass
class Recorder:
    """A Notifier that keeps every message with the (virtual) time and the log output so far."""

    stream: io.StringIO
    sent: list[Sent] = field(default_factory=list)

    def send(self, message: str) -> None:
        self.sent.append(Sent(trio.current_time(), message, self.stream.getvalue()))

    def named(self, first_line: str) -> list[Sent]:
        return [s for s in self.sent if s.message.split("\n", 1)[0] == first_line]

    def pings(self) -> list[float]:
        return [s.at for s in self.named("WATCHDOG=1")]

    def statuses(self) -> list[str]:
        return [line for s in self.sent for line in s.message.split("\n") if line.startswith("STATUS=")]


@dataclass
class Harness:
    supervisor: Supervisor
    recorder: Recorder
    factory: FakeFactory
    signals: trio.MemorySendChannel[int]
    numbers: list[tuple[str, int]]

    def signal(self, signum: int) -> None:
        self.signals.send_nowait(signum)

    def slot_worker(self, label: str, index: int = 0) -> FakeWorker:
        worker = self.supervisor.slots[label][index].worker
        assert isinstance(worker, FakeWorker)
        return worker


def build(
    factory: FakeFactory, units: list[Unit], watchdog_every: float | None
) -> tuple[Supervisor, Recorder, trio.MemorySendChannel[int], list[tuple[str, int]]]:
    stream = io.StringIO()
    recorder = Recorder(stream)
    send, receive = trio.open_memory_channel[int](math.inf)
    numbers: list[tuple[str, int]] = []

    def make_worker(unit: Unit, request_limit: int, number: int) -> Worker:
        numbers.append((unit.label, number))
        return factory(unit, request_limit)

    supervisor = Supervisor(
        ServePlan(units, graceful_timeout=3.0, ready_timeout=60.0, port_map=""),
        {unit.label: socket.create_server(("127.0.0.1", 0)) for unit in units},
        LabelWriter(stream, [unit.label for unit in units], colour=False),
        systemd=Systemd(recorder, watchdog_every),
        make_worker=make_worker,
        open_signals=lambda *signals: nullcontext(receive),
    )
    return supervisor, recorder, send, numbers


@asynccontextmanager
async def supervising(
    factory: FakeFactory, units: list[Unit], watchdog_every: float | None = None
) -> AsyncIterator[Harness]:
    """A supervisor that is ready; SIGTERM on the way out unless the test stopped it."""
    supervisor, recorder, send, numbers = build(factory, units, watchdog_every)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            yield Harness(supervisor, recorder, factory, send, numbers)
            if not supervisor.draining:
                send.send_nowait(signal.SIGTERM)


async def test_ready_follows_the_table_and_the_watchdog_pings_every_half_interval() -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users", 2), make_unit("orders")], watchdog_every=5) as h:
        assert h.recorder.sent[0].message == "STATUS=starting 2 apps, 3 workers"
        [ready] = h.recorder.named("READY=1")
        assert ready.message == "READY=1\nSTATUS=2 apps, 3 workers ready"
        assert ready.at == max(e.at for e in factory.seen("ready"))  # no sooner than the last worker
        assert "qkhyper | app " in ready.output and "qkhyper | orders  /orders  http://127.0.0.1:" in ready.output
        await trio.sleep(12)
        assert h.recorder.pings() == [ready.at, ready.at + 5, ready.at + 10]


async def test_without_watchdog_usec_there_is_no_ping() -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users")], watchdog_every=None) as h:
        await trio.sleep(600)
        assert h.recorder.pings() == [] and len(h.recorder.named("READY=1")) == 1


async def test_sighup_is_reloading_then_ready_once_every_slot_rolled() -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users", 2), make_unit("orders")]) as h:
        before = monotonic_usec()
        h.signal(signal.SIGHUP)
        await factory.until(lambda: len(h.recorder.named("READY=1")) == 2)
        after = monotonic_usec()
        [reloading] = h.recorder.named("RELOADING=1")
        _, stamp, status = reloading.message.split("\n")
        assert status == "STATUS=rolling users"
        assert before <= int(stamp.removeprefix("MONOTONIC_USEC=")) <= after  # CLOCK_MONOTONIC, as systemd's
        ready = h.recorder.named("READY=1")[1]
        replacements = [e.at for e in factory.seen("ready") if e.pid >= 1003]
        assert len(replacements) == 3 and reloading.at < min(replacements) and ready.at == max(replacements)
        assert ready.message == "READY=1\nSTATUS=2 apps, 3 workers ready"
        assert "STATUS=rolling orders" in h.recorder.statuses()


async def test_a_second_sighup_during_a_roll_is_answered_by_its_ready(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users", 2)]) as h:
        h.signal(signal.SIGHUP)
        await factory.until(lambda: len(factory.seen("spawn")) == 3)  # the roll is under way
        h.signal(signal.SIGHUP)
        await factory.until(lambda: len(h.recorder.named("READY=1")) == 2)
        await trio.sleep(60)
        first, second = h.recorder.named("RELOADING=1")
        assert int(second.message.split("\n")[1][15:]) >= int(first.message.split("\n")[1][15:])
        assert second.at < h.recorder.named("READY=1")[1].at
        assert len(h.recorder.named("READY=1")) == 2 and len(factory.seen("spawn")) == 4  # one roll
        assert "a rolling restart is already running" in caplog.text


async def test_sigterm_says_stopping_before_any_worker_is_asked_to_drain() -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users", 2), make_unit("orders")], watchdog_every=5) as h:
        await trio.sleep(7)
        h.signal(signal.SIGTERM)
        await factory.until(lambda: len(factory.seen("exit")) == 3)
        [stopping] = h.recorder.named("STOPPING=1")
        assert stopping.message == "STOPPING=1\nSTATUS=stopping: draining 3 workers"
        assert stopping.at <= min(e.at for e in factory.seen("TERM"))


async def test_a_failed_start_says_stopping_and_never_ready() -> None:
    factory = FakeFactory([Start(), Start(outcome="fail")])
    supervisor, recorder, _, _ = build(factory, [make_unit("users"), make_unit("orders")], watchdog_every=5)
    with (
        trio.fail_after(DEADLINE),
        pytest.RaisesGroup(pytest.RaisesExc(AppStartupError), flatten_subgroups=True),
    ):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
    assert [s.message.split("\n")[0] for s in recorder.sent] == ["STATUS=starting 2 apps, 2 workers", "STOPPING=1"]


async def test_one_crash_delays_a_ping_by_the_restart_and_no_more(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users"), make_unit("orders")], watchdog_every=5) as h:
        ready = h.recorder.named("READY=1")[0].at
        await trio.sleep(4.5)
        h.slot_worker("users").crash()
        await factory.until(lambda: h.supervisor.slots["users"][0].worker is factory.workers[-1])
        back = factory.seen("ready")[-1].at
        assert back == ready + 4.5 + 0.5 + 1.0  # back-off, then the fake's start-up
        await trio.sleep(20)
        pings = h.recorder.pings()
        assert pings[:3] == [ready, back, back + 5]  # resumed as soon as healthy, not at the next tick
        assert "STATUS=users has no worker" in h.recorder.statuses()
        assert h.recorder.statuses()[-1] == "STATUS=2 apps, 2 workers ready"
        assert "watchdog: not pinging systemd while users has no worker" in caplog.text
        assert "watchdog: every app is healthy again; pinging systemd" in caplog.text


async def test_a_crash_loop_starves_the_watchdog_until_a_worker_settles() -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users")], watchdog_every=5) as h:
        for n in range(1, 4):
            h.slot_worker("users").crash()
            await factory.until(lambda n=n: len(factory.seen("ready")) == n + 1)  # type: ignore[misc]
        slot = h.supervisor.slots["users"][0]
        assert slot.streak == 3
        since = slot.serving_since
        assert since is not None
        await trio.sleep_until(since + 100)
        assert "STATUS=users crash-looping (3 failures in a row)" in h.recorder.statuses()
        last_crash = factory.seen("exit")[-1].at
        pings = h.recorder.pings()
        assert [t for t in pings if last_crash <= t < since + 60] == []
        assert since + 60 in pings  # settled: the ping resumes by itself, no event needed
        assert h.recorder.statuses()[-1] == "STATUS=users: 1 worker ready"
        h.slot_worker("users").crash()  # a crash after a settled run starts the count again
        await factory.until(lambda: len(factory.seen("ready")) == 5)
        assert slot.streak == 1


async def test_a_hung_worker_starves_the_watchdog_until_replaced() -> None:
    factory = FakeFactory()
    limits = WorkerLimits(worker_timeout=60)
    async with supervising(factory, [make_unit("users", limits=limits)], watchdog_every=5) as h:
        h.slot_worker("users").crash()  # one failure already
        await factory.until(lambda: len(factory.seen("ready")) == 2)
        await trio.sleep(20)
        hung = h.slot_worker("users")
        hung.hung = True
        await factory.until(lambda: len(factory.seen("ready")) == 3)
        stack = factory.seen("STACK")[0].at
        back = factory.seen("ready")[2].at
        await trio.sleep(10)
        assert [
            t for t in h.recorder.pings() if stack < t < back
        ] == []  # one at the very instant may precede the verdict
        before = max(t for t in h.recorder.pings() if t <= stack)
        after = min(t for t in h.recorder.pings() if t >= back)
        assert after == max(back, before + 5)  # on time, or at once if the outage made it late
        assert "STATUS=users worker hung" in h.recorder.statuses()
        # Its loop stopped 20 s after it started, though it was killed 60 s later: a second failure in a row.
        assert h.supervisor.slots["users"][0].streak == 2


async def test_scaling_reuses_slot_numbers_and_updates_the_status() -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users", 2)]) as h:
        assert sorted(h.numbers) == [("users", 1), ("users", 2)]
        h.signal(signal.SIGTTOU)
        await factory.until(lambda: h.recorder.statuses()[-1] == "STATUS=users: 1 worker ready")
        h.signal(signal.SIGTTIN)
        await factory.until(lambda: h.recorder.statuses()[-1] == "STATUS=users: 2 workers ready")
        h.signal(signal.SIGHUP)
        await factory.until(lambda: len(h.recorder.named("READY=1")) == 2)
        # The number freed by SIGTTOU went to the next slot; a roll keeps each slot's number.
        assert h.numbers[2:] == [("users", 2), ("users", 1), ("users", 2)]


async def test_a_number_freed_by_a_failed_scale_up_goes_to_the_next_slot() -> None:
    factory = FakeFactory([Start(), Start(seconds=10, outcome="fail"), Start(), Start()])
    async with supervising(factory, [make_unit("users")]) as h:
        h.signal(signal.SIGTTIN)
        await factory.until(lambda: len(factory.seen("spawn")) == 2)  # slot 2: a slow start that fails
        h.signal(signal.SIGTTIN)
        await factory.until(lambda: len(factory.seen("exit")) == 1 and len(factory.seen("ready")) == 2)
        h.signal(signal.SIGTTIN)
        await factory.until(lambda: h.recorder.statuses()[-1] == "STATUS=users: 3 workers ready")
        assert sorted(h.supervisor.numbers.values()) == [1, 2, 3]


async def test_a_reload_roll_shows_in_status_but_is_no_systemd_reload() -> None:
    """--reload's rolls (a source file changed) are the developer's, not `systemctl reload`: no RELOADING=1."""
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users"), make_unit("orders")]) as h:
        await h.supervisor._roll({"orders"})  # what the --reload watcher calls
        await trio.testing.wait_all_tasks_blocked()
        assert h.recorder.statuses()[-2:] == ["STATUS=rolling orders", "STATUS=2 apps, 2 workers ready"]
        assert h.recorder.named("RELOADING=1") == [] and len(h.recorder.named("READY=1")) == 1


async def test_a_failed_roll_says_so_instead_of_done(caplog: pytest.LogCaptureFixture) -> None:
    """The replacement fails to start: the log says which app kept which worker, and READY=1 still ends the reload."""
    caplog.set_level(logging.INFO)
    factory = FakeFactory(starts=[Start(), Start(), Start(outcome="fail")])
    async with supervising(factory, [make_unit("users"), make_unit("orders")]) as h:
        h.signal(signal.SIGHUP)
        await factory.until(lambda: len(h.recorder.named("READY=1")) == 2)
        [users] = h.supervisor.slots["users"]
        assert users.worker is not None and users.worker.pid in (1000, 1001)
        assert f"rolling restart failed for users: kept worker {users.worker.pid}\n" in caplog.text
        assert "rolling restart done" not in caplog.text
        assert factory.seen("ready", 1003)  # orders rolled all the same

        caplog.clear()
        h.signal(signal.SIGHUP)  # a good roll afterwards is done again
        await factory.until(lambda: len(h.recorder.named("READY=1")) == 3)
        assert "rolling restart done" in caplog.text and "rolling restart failed" not in caplog.text
