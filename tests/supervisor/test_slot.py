"""A slot with fake workers, in-process on trio's MockClock: minutes of supervision in milliseconds.

Back-off, crash accounting, recycling, the watchdog, rolls and ready timeouts
are the slot's own logic; the real-process tests (test_signals, test_recycle,
test_watchdog) check that real workers do their part.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from qkhyper.config.model import WorkerLimits
from qkhyper.errors import AppStartupError
from qkhyper.supervisor.plan import ChildSpec, Unit
from qkhyper.supervisor.policy import beat_interval
from qkhyper.supervisor.slot import Slot, SlotConfig
from tests.supervisor.fakes import KILLED, FakeFactory, FakeWorker, Start

pytestmark = pytest.mark.anyio

DEADLINE = 100_000  # virtual seconds any test may take: a hang fails at once instead of stalling
DEFAULTS = WorkerLimits()


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


def make_unit(limits: WorkerLimits) -> Unit:
    child = ChildSpec(
        "probe", [], "", "hypercorn", "asyncio", {}, [], 60.0, "local", beat_interval=beat_interval(limits)
    )
    return Unit("probe", ["probe"], "127.0.0.1", 0, 1, child, limits=limits)


@asynccontextmanager
async def running(
    factory: FakeFactory, limits: WorkerLimits = DEFAULTS, ready_timeout: float = 60.0
) -> AsyncIterator[Slot]:
    """A started slot (its first worker ready); stopped gracefully on the way out."""
    slot = Slot(SlotConfig(make_unit(limits), ready_timeout, graceful_timeout=3.0), factory, random.Random(1))
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(slot.run)
            yield slot
            slot.request_stop(graceful=True)


def startup_error(match: str) -> pytest.RaisesGroup[AppStartupError]:
    """The AppStartupError a slot raises, however many nurseries wrapped it on the way out."""
    return pytest.RaisesGroup(pytest.RaisesExc(AppStartupError, match=match), flatten_subgroups=True)


def current(slot: Slot) -> FakeWorker:
    assert isinstance(slot.worker, FakeWorker)
    return slot.worker


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "qkhyper.supervisor"]


async def test_crash_loop_backs_off_then_a_long_run_resets_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    factory = FakeFactory()
    async with running(factory, WorkerLimits(worker_timeout=0)) as slot:
        for n in range(1, 6):
            worker = current(slot)
            worker.crash(3)
            await factory.until(lambda n=n: len(factory.workers) == n + 1 and slot.worker is factory.workers[-1])
        delays = [
            round(factory.seen("spawn", new.pid)[0].at - factory.seen("exit", old.pid)[0].at, 3)
            for old, new in zip(factory.workers, factory.workers[1:], strict=False)
        ]
        assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]  # each restart also waits 1 s for readiness, not counted here
        assert slot.restarts == {"crash": 5}
        assert "probe: worker 1000 exited with code 3; restarting in 0.5 s" in messages(caplog)
        assert "probe: worker 1004 exited with code 3; restarting in 8.0 s" in messages(caplog)

        await trio.sleep(60)  # a worker that stayed up a minute earns a fresh start
        current(slot).crash(3)
        await factory.until(lambda: len(factory.workers) == 7)
        assert messages(caplog)[-1] == "probe: worker 1005 exited with code 3; restarting in 0.5 s"


async def test_a_restart_that_fails_to_start_is_retried_with_back_off(caplog: pytest.LogCaptureFixture) -> None:
    factory = FakeFactory([Start(), Start(outcome="die"), Start(outcome="fail"), Start()])
    async with running(factory, WorkerLimits(worker_timeout=0)) as slot:
        current(slot).crash(3)
        await factory.until(lambda: len(factory.workers) == 4 and factory.seen("ready", 1003) != [])
        assert current(slot).pid == 1003
        assert any(
            "worker (pid 1001) exited with code 3 before it was ready; retrying in 1.0 s" in m for m in messages(caplog)
        )
        assert any("database unreachable; retrying in 2.0 s" in m for m in messages(caplog))


async def test_recycle_after_max_requests_is_a_roll_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    factory = FakeFactory()
    async with running(factory, WorkerLimits(max_requests=1000)) as slot:
        old = current(slot)
        assert old.request_limit == 1000
        old.serve(999)
        await trio.sleep(100)  # beats carry the count; 999 is not yet the limit
        assert slot.worker is old
        old.serve(1)
        await factory.until(lambda: old.exited)
        new = current(slot)
        assert "probe: worker 1000 recycled after 1000 requests (new 1001)" in messages(caplog)
        # The replacement was ready before the old worker was asked to drain, and that drain was graceful.
        assert factory.seen("ready", new.pid)[0].at <= factory.seen("TERM", old.pid)[0].at
        assert old.returncode == 0 and not factory.seen("KILL")
        assert slot.restarts == {"recycle": 1}
        assert slot.backoff.delay(0, 1) == 0.5  # untouched: the next crash still restarts at once


async def test_each_worker_draws_its_own_jitter() -> None:
    factory = FakeFactory()
    async with running(factory, WorkerLimits(max_requests=1000, max_requests_jitter=100)) as slot:
        for _ in range(5):
            worker = current(slot)
            worker.serve(worker.request_limit)
            await factory.until(lambda worker=worker: worker.exited)
    limits = {w.request_limit for w in factory.workers}
    assert all(1000 <= limit <= 1100 for limit in limits) and len(limits) > 1


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (WorkerLimits(max_lifetime=3600), "probe: worker 1000 recycled after 3600 s (new 1001)"),
        (WorkerLimits(max_rss_mb=512), "probe: worker 1000 recycled at 600 MB RSS (new 1001)"),
    ],
)
async def test_recycle_on_lifetime_and_memory(
    caplog: pytest.LogCaptureFixture, limits: WorkerLimits, expected: str
) -> None:
    caplog.set_level(logging.INFO)
    factory = FakeFactory()
    async with running(factory, limits) as slot:
        old = current(slot)
        ready_at = old.heartbeat.ready_at
        await trio.sleep(1800)
        assert slot.worker is old
        old.rss = 600.0
        await factory.until(lambda: old.exited)
        assert expected in messages(caplog)
        if limits.max_lifetime:
            assert factory.seen("spawn", 1001)[0].at == ready_at + 3600  # on time, not at the next beat
        assert slot.restarts == {"recycle": 1}


async def test_a_failed_recycle_keeps_the_worker_and_tries_again(caplog: pytest.LogCaptureFixture) -> None:
    factory = FakeFactory([Start(), Start(outcome="fail"), Start()])
    async with running(factory, WorkerLimits(max_requests=10)) as slot:
        old = current(slot)
        old.serve(10)
        await factory.until(lambda: old.exited)
        assert any(
            m.startswith("probe: recycling failed, keeping worker 1000: app 'probe': lifespan startup failed")
            for m in messages(caplog)
        )
        assert current(slot).pid == 1002 and slot.restarts == {"recycle": 1}


async def test_a_hung_worker_has_its_stack_dumped_then_takes_the_crash_path(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    factory = FakeFactory()
    async with running(factory, WorkerLimits(worker_timeout=60)) as slot:
        hung = current(slot)
        await trio.sleep(600)  # beats every 15 s keep a healthy worker
        assert slot.worker is hung and not slot.restarts
        hung.hung = True
        last_beat = hung.heartbeat.last
        await factory.until(lambda: hung.exited)
        assert [e.what for e in factory.events if e.pid == hung.pid][-3:] == ["STACK", "KILL", "exit"]
        assert factory.seen("STACK")[0].at == last_beat + 60
        assert "probe: worker 1000 unresponsive for 60 s; stack follows; replacing" in messages(caplog)
        assert "probe: worker 1000 was killed by SIGKILL; restarting in 0.5 s" in messages(caplog)
        await factory.until(lambda: len(factory.workers) == 2 and slot.worker is factory.workers[1])
        assert slot.restarts == {"hang": 1}
        assert slot.last_exit == "hang: worker 1000 was killed by SIGKILL"


async def test_a_stack_that_never_comes_does_not_stop_the_kill() -> None:
    factory = FakeFactory()
    async with running(factory, WorkerLimits(worker_timeout=10)) as slot:
        hung = current(slot)
        hung.hung = True
        hung.dumps_stack = False
        await factory.until(lambda: hung.exited)
        assert hung.returncode == KILLED


async def test_the_watchdog_starts_once_the_worker_is_ready() -> None:
    factory = FakeFactory([Start(seconds=200)])  # slower than worker_timeout: ready_timeout's business
    async with running(factory, WorkerLimits(worker_timeout=60), ready_timeout=300) as slot:
        assert factory.seen("ready", 1000)[0].at == 200
        await trio.sleep(300)
        assert slot.worker is factory.workers[0] and not factory.seen("STACK")


async def test_no_worker_timeout_no_watchdog() -> None:
    factory = FakeFactory()
    async with running(factory, WorkerLimits(worker_timeout=0)) as slot:
        current(slot).hung = True
        await trio.sleep(10_000)
        assert not factory.seen("STACK") and not current(slot).exited


async def test_ready_timeout_kills_the_worker() -> None:
    factory = FakeFactory([Start(outcome="never")])
    slot = Slot(SlotConfig(make_unit(WorkerLimits()), 5.0, 3.0), factory)
    with trio.fail_after(DEADLINE), startup_error(r"worker \(pid 1000\) was not ready within 5 s"):
        async with trio.open_nursery() as nursery:
            await nursery.start(slot.run)
    assert [e.what for e in factory.events] == ["spawn", "KILL", "exit"]
    assert factory.events[1].at == 5


@pytest.mark.parametrize(("exits_after", "killed"), [(2.0, False), (30.0, True)])
async def test_a_failed_start_is_left_to_exit_by_itself(exits_after: float, killed: bool) -> None:
    """The worker shuts down the apps that did start before it reports; killing it at the report would cut that short."""
    factory = FakeFactory([Start(outcome="fail", exits_after=exits_after)])
    slot = Slot(SlotConfig(make_unit(WorkerLimits()), 60.0, graceful_timeout=3.0), factory)
    with trio.fail_after(DEADLINE), startup_error("database unreachable"):
        async with trio.open_nursery() as nursery:
            await nursery.start(slot.run)
    assert bool(factory.seen("KILL")) is killed  # only past the stop deadline (graceful_timeout + 1)
    if killed:
        assert factory.seen("KILL")[0].at == factory.seen("failed")[0].at + 4


async def test_a_worker_still_starting_when_the_slot_stops_is_stopped_gracefully() -> None:
    """A sibling's failed start cancels this slot: its worker finishes starting and shuts down (SIGTERM)."""
    factory = FakeFactory([Start(seconds=10)])
    slot = Slot(SlotConfig(make_unit(WorkerLimits()), 60.0, 3.0), factory)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slot.run)
            await factory.until(lambda: bool(factory.seen("spawn")))
            nursery.cancel_scope.cancel()
    assert [e.what for e in factory.events] == ["spawn", "TERM", "exit"]
    assert factory.workers[0].returncode == 0 and slot.finished.is_set()


async def test_hup_roll_replaces_only_after_the_new_worker_is_ready(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    factory = FakeFactory([Start(), Start(seconds=5)])
    async with running(factory) as slot:
        old = current(slot)
        await slot.roll()
        new = current(slot)
        await factory.until(lambda: old.exited)
        assert factory.seen("ready", new.pid)[0].at <= factory.seen("TERM", old.pid)[0].at
        assert "probe: worker 1000 replaced by 1001; draining the old one" in messages(caplog)
        assert slot.restarts == {"roll": 1}
        assert slot.last_exit == "roll: worker 1000 replaced"


async def test_a_failed_roll_keeps_the_old_worker(caplog: pytest.LogCaptureFixture) -> None:
    factory = FakeFactory([Start(), Start(outcome="fail")])
    async with running(factory) as slot:
        old = current(slot)
        await slot.roll()
        assert slot.worker is old and not old.exited
        assert any(m.startswith("probe: rolling restart failed, keeping worker 1000") for m in messages(caplog))


async def test_a_stop_drains_gracefully_and_a_quit_kills() -> None:
    for graceful, code in ((True, 0), (False, KILLED)):
        factory = FakeFactory()
        slot = Slot(SlotConfig(make_unit(WorkerLimits()), 60.0, 3.0), factory)
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                await nursery.start(slot.run)
                slot.request_stop(graceful)
        assert factory.workers[0].returncode == code


async def test_only_the_serving_worker_is_watched() -> None:
    """A worker being drained after a roll is bounded by the stop deadline, not the watchdog."""
    factory = FakeFactory([Start(ignores_term=True), Start()])
    async with running(factory, WorkerLimits(worker_timeout=1)) as slot:
        old = current(slot)
        await slot.roll()
        old.hung = True
        await factory.until(lambda: old.exited)
        assert [e.what for e in factory.events if e.pid == old.pid][-3:] == ["TERM", "KILL", "exit"]
        assert factory.seen("KILL")[0].at == factory.seen("TERM")[0].at + 4  # graceful_timeout + 1


async def test_memory_that_cannot_be_read_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    factory = FakeFactory()
    async with running(factory, WorkerLimits(max_rss_mb=100)) as slot:
        current(slot).rss = None
        await trio.sleep(30)
        warnings = [m for m in messages(caplog) if "max_rss_mb is set" in m]
        assert warnings == ["probe: max_rss_mb is set, but a worker's memory cannot be read here (no /proc)"]
        assert slot.worker is factory.workers[0]
