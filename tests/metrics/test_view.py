"""What the endpoints read of a real `Supervisor` with fake workers, on MockClock: states, restarts, health."""

from __future__ import annotations

import signal
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from qkhyper.metrics.health import healthz
from qkhyper.metrics.view import RestartTotals, SupervisorSample, sample
from qkhyper.supervisor.run import Supervisor
from tests.supervisor.fakes import FakeFactory, Start
from tests.supervisor.test_systemd import make_unit, supervising

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


def read(sup: Supervisor, totals: RestartTotals) -> SupervisorSample:
    return sample(sup, totals, trio.current_time(), 0.0)


async def test_a_crash_counts_and_health_follows_the_workers_left() -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users", 2), make_unit("orders")]) as h:
        totals = RestartTotals()
        before = read(h.supervisor, totals)
        assert before.apps == {"users": (2, 2), "orders": (1, 1)}
        assert before.states == {("users", "ready"): 2, ("orders", "ready"): 1}
        assert healthz(before.apps)[0] == 200 and before.started
        assert [(w.app, w.number, w.rss_bytes) for w in before.workers] == [
            ("users", 1, 60 * 1024 * 1024),
            ("users", 2, 60 * 1024 * 1024),
            ("orders", 1, 60 * 1024 * 1024),
        ]

        h.slot_worker("users", 0).crash()
        await factory.until(lambda: h.supervisor.slots["users"][0].worker is None)
        one_left = read(h.supervisor, totals)
        assert one_left.apps["users"] == (1, 2)
        assert one_left.restarts == {("users", "crash"): 1}
        assert healthz(one_left.apps)[0] == 200  # users still has a ready worker

        h.slot_worker("orders").crash()
        await factory.until(lambda: h.supervisor.slots["orders"][0].worker is None)
        down = read(h.supervisor, totals)
        assert down.apps["orders"] == (0, 1)
        assert healthz(down.apps)[0] == 503  # orders has none until its restart is ready

        await factory.until(lambda: all(s.worker is not None for g in h.supervisor.slots.values() for s in g))
        after = read(h.supervisor, totals)
        assert healthz(after.apps)[0] == 200
        assert after.restarts == {("users", "crash"): 1, ("orders", "crash"): 1}


async def test_a_roll_counts_roll_and_shows_starting_then_draining() -> None:
    factory = FakeFactory(starts=[Start(), Start(seconds=5.0, exits_after=5.0)])
    async with supervising(factory, [make_unit("users")]) as h:
        totals = RestartTotals()
        h.signal(signal.SIGHUP)
        await factory.until(lambda: len(factory.seen("spawn")) == 2)
        assert read(h.supervisor, totals).states == {("users", "ready"): 1, ("users", "starting"): 1}
        await factory.until(lambda: len(factory.seen("TERM")) == 1)
        rolled = read(h.supervisor, totals)
        assert rolled.states == {("users", "ready"): 1, ("users", "draining"): 1}
        assert rolled.restarts == {("users", "roll"): 1}


async def test_a_hang_is_its_own_reason() -> None:
    from qkhyper.config.model import WorkerLimits

    factory = FakeFactory()
    async with supervising(factory, [make_unit("users", limits=WorkerLimits(worker_timeout=4))]) as h:
        totals = RestartTotals()
        h.slot_worker("users").hung = True
        await factory.until(lambda: len(factory.seen("KILL")) == 1)
        await factory.until(lambda: h.supervisor.slots["users"][0].worker is not None)
        assert read(h.supervisor, totals).restarts == {("users", "hang"): 1}


async def test_restarts_of_a_removed_worker_slot_stay_counted() -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users", 2)]) as h:
        totals = RestartTotals()
        h.slot_worker("users", 1).crash()
        await factory.until(lambda: all(s.worker is not None for s in h.supervisor.slots["users"]))
        assert read(h.supervisor, totals).restarts == {("users", "crash"): 1}
        h.signal(signal.SIGTTOU)  # removes the last slot, the one that crashed
        await factory.until(lambda: len(factory.seen("exit")) == 2)
        h.supervisor.retiring.clear()  # as the next SIGTTOU would, once it finished
        assert len(h.supervisor.slots["users"]) == 1
        assert read(h.supervisor, totals).restarts == {("users", "crash"): 1}
