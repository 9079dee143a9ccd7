"""What the supervisor does with each control request, in-process: fake workers, MockClock, no sockets.

The same `Supervisor.control` answers the real socket (test_control_e2e.py);
here every branch is pinned in milliseconds: status rows and states, restart
of one app only, scale both ways, reload with a good and a broken config,
stop, and requests that come too early.
"""

from __future__ import annotations

import dataclasses
import signal
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from qkhyper.control.protocol import Reload, Restart, Scale, Status, Stop
from qkhyper.errors import ConfigError
from qkhyper.supervisor.plan import ServePlan
from tests.supervisor.fakes import FakeFactory, Start
from tests.supervisor.test_systemd import DEADLINE, build, make_unit, supervising

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


def workers(status: dict[str, Any], app: str) -> list[dict[str, Any]]:
    [found] = [a for a in status["apps"] if a["name"] == app]
    return list(found["workers"])


def pids(status: dict[str, Any], app: str, state: str = "ready") -> list[int]:
    return [w["pid"] for w in workers(status, app) if w["state"] == state]


async def test_status_lists_every_app_and_worker() -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users", 2), make_unit("orders", 2)]) as h:
        await trio.sleep(30)
        answer = await h.supervisor.control(Status())
        assert answer["ok"] is True and answer["server"] == "serve" and answer["state"] == "ready"
        assert answer["uptime_s"] >= 30
        [users, orders] = answer["apps"]
        assert (users["name"], users["prefixes"], users["backend"], users["workers_wanted"]) == (
            "users",
            ["/users"],
            "hypercorn",
            2,
        )
        assert users["url"].startswith("http://127.0.0.1:")
        assert [(w["slot"], w["state"], w["restarts"], w["last_exit"]) for w in users["workers"]] == [
            (1, "ready", 0, None),
            (2, "ready", 0, None),
        ]
        assert sorted(pids(answer, "users") + pids(answer, "orders")) == [1000, 1001, 1002, 1003]
        assert all(w["rss_mb"] == 60.0 and w["uptime_s"] >= 29 for w in users["workers"] + orders["workers"])


async def test_requests_served_come_from_the_heartbeat() -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users")]) as h:
        worker = h.slot_worker("users")
        worker.serve(7)
        worker.heartbeat.beat(worker.requests, trio.current_time())
        [row] = workers(h.supervisor.status(), "users")
        assert row["requests"] == 7


async def test_restart_rolls_the_named_app_only_and_says_what_changed() -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users", 2), make_unit("orders", 2)]) as h:
        before = h.supervisor.status()
        answer = await h.supervisor.control(Restart(("users",)))
        after = h.supervisor.status()
        assert answer == {"ok": True, "changed": {"users": {"before": pids(before, "users"), "after": [1004, 1005]}}}
        assert pids(after, "orders") == pids(before, "orders")
        assert pids(after, "users") == [1004, 1005]  # in slot order: each slot's replacement took its place
        assert [(w["restarts"], w["last_exit"]) for w in workers(after, "users") if w["state"] == "ready"] == [
            (1, f"roll: worker {pids(before, 'users')[0]} replaced"),
            (1, f"roll: worker {pids(before, 'users')[1]} replaced"),
        ]
        # The last one replaced is still finishing its requests.
        assert pids(after, "users", "draining") == pids(before, "users")[1:]
        # Only the replaced workers were asked to drain, each after its replacement was ready.
        await factory.until(lambda: len(factory.seen("TERM")) == 2)
        assert sorted(e.pid for e in factory.seen("TERM")) == sorted(pids(before, "users"))
        first = pids(before, "users")[0]
        assert factory.seen("TERM", first)[0].at >= factory.seen("ready", 1004)[0].at


async def test_a_failed_restart_keeps_the_worker_and_the_answer_shows_it() -> None:
    factory = FakeFactory([Start(), Start(outcome="fail")])
    async with supervising(factory, [make_unit("users")]) as h:
        answer = await h.supervisor.control(Restart(("users",)))
        assert answer["changed"] == {"users": {"before": [1000], "after": [1000]}}


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (Restart(("nope",)), "no app 'nope' here; apps: users, orders"),
        (Restart(("users", "nope")), "no app 'nope' here; apps: users, orders"),
        (Scale("nope", 2), "no app 'nope' here; apps: users, orders"),
        (Reload(), "this supervisor cannot re-read its config"),
    ],
)
async def test_requests_it_cannot_do_are_refused_in_one_line(request_: Any, error: str) -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users"), make_unit("orders")]) as h:
        assert await h.supervisor.control(request_) == {"ok": False, "error": error}
        assert not factory.seen("TERM")


async def test_an_aio_app_is_restarted_through_its_unit() -> None:
    factory = FakeFactory()
    unit = make_unit("aio")
    unit = dataclasses.replace(unit, child=dataclasses.replace(unit.child, apps=[*unit.child.apps]))
    unit.child.apps[0] = dataclasses.replace(unit.child.apps[0], name="users")
    async with supervising(factory, [unit]) as h:
        answer = await h.supervisor.control(Restart(("users",)))
        assert answer["changed"] == {"aio": {"before": [1000], "after": [1001]}}


async def test_scale_adds_then_removes_workers_of_one_app() -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users"), make_unit("orders")]) as h:
        [first], [other] = pids(h.supervisor.status(), "users"), pids(h.supervisor.status(), "orders")
        up = await h.supervisor.control(Scale("users", 3))
        assert up["changed"]["users"]["before"] == [first]
        added = up["changed"]["users"]["after"]
        assert added[0] == first and sorted(added[1:]) == [1002, 1003]
        status = h.supervisor.status()
        assert [w["slot"] for w in workers(status, "users")] == [1, 2, 3]
        assert pids(status, "orders") == [other]
        down = await h.supervisor.control(Scale("users", 1))
        assert down["changed"] == {"users": {"before": up["changed"]["users"]["after"], "after": [first]}}
        assert {1002, 1003} == {e.pid for e in factory.seen("exit")}  # drained before the answer
        assert len(workers(h.supervisor.status(), "users")) == 1


async def test_a_worker_being_removed_shows_as_draining() -> None:
    factory = FakeFactory([Start(ignores_term=True), Start(ignores_term=True)])
    async with supervising(factory, [make_unit("users", 2)]) as h:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.supervisor.control, Scale("users", 1))
            await factory.until(lambda: bool(factory.seen("TERM")))
            [removed] = factory.seen("TERM")
            rows = workers(h.supervisor.status(), "users")
            assert [(w["slot"], w["state"]) for w in rows] == [(1, "ready"), (0, "draining")]
            assert rows[1]["pid"] == removed.pid
            drained_at = trio.current_time()
        # The stop deadline (graceful 3 s + 1 s) ended the drain that never ended by itself.
        assert factory.seen("KILL", removed.pid)[0].at == drained_at + 4
        assert [(w["slot"], w["state"]) for w in workers(h.supervisor.status(), "users")] == [(1, "ready")]


async def test_a_crashed_worker_shows_as_restarting_then_ready_with_its_exit() -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users")]) as h:
        h.slot_worker("users").crash(3)
        await factory.until(lambda: len(factory.seen("spawn")) == 1 and factory.seen("exit") != [])
        [row] = workers(h.supervisor.status(), "users")
        assert (row["pid"], row["state"], row["restarts"]) == (None, "restarting", 1)
        assert row["restarts_by_reason"] == {"crash": 1}
        await factory.until(lambda: len(factory.seen("ready")) == 2)
        [row] = workers(h.supervisor.status(), "users")
        assert (row["pid"], row["state"], row["last_exit"]) == (1001, "ready", "crash: worker 1000 exited with code 3")


async def test_a_replacement_still_starting_shows_as_starting() -> None:
    factory = FakeFactory([Start(), Start(seconds=30)])
    async with supervising(factory, [make_unit("users")]) as h:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.supervisor.control, Restart(("users",)))
            await factory.until(lambda: len(factory.seen("spawn")) == 2)
            rows = workers(h.supervisor.status(), "users")
            assert [(w["pid"], w["state"]) for w in rows] == [(1000, "ready"), (1001, "starting")]


async def test_reload_applies_the_new_plan_and_rolls_every_app() -> None:
    factory = FakeFactory()
    units = [make_unit("users"), make_unit("orders")]
    async with supervising(factory, units) as h:
        changed = dataclasses.replace(units[0], child=dataclasses.replace(units[0].child, ready_timeout=5.0))
        h.supervisor.replan = lambda: ServePlan([changed, units[1]], 3.0, 60.0, "")
        before = h.supervisor.status()
        answer = await h.supervisor.control(Reload())
        assert answer["changed"] == {
            "users": {"before": pids(before, "users"), "after": [1002]},
            "orders": {"before": pids(before, "orders"), "after": [1003]},
        }
        assert h.supervisor.slots["users"][0].config.unit.child.ready_timeout == 5.0


async def test_reload_with_a_broken_config_keeps_every_worker() -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users")]) as h:

        def broken() -> ServePlan:
            raise ConfigError("hypercorn.toml: unknown key 'prot'")

        h.supervisor.replan = broken
        answer = await h.supervisor.control(Reload())
        assert answer == {
            "ok": False,
            "error": "config not applied, workers keep serving: hypercorn.toml: unknown key 'prot'",
        }
        assert len(factory.seen("spawn")) == 1


@pytest.mark.parametrize("now", [False, True])
async def test_stop_drains_or_kills_and_answers_at_once(now: bool) -> None:
    factory = FakeFactory()
    async with supervising(factory, [make_unit("users", 2)]) as h:
        answer = await h.supervisor.control(Stop(now))
        assert answer["ok"] is True and answer["stopping"] is True
        assert h.supervisor.draining
        assert (await h.supervisor.control(Status()))["state"] == "draining"
        assert await h.supervisor.control(Restart(("users",))) == {"ok": False, "error": "shutting down"}
        await factory.until(lambda: len(factory.seen("exit")) == 2)
        assert bool(factory.seen("KILL")) is now and bool(factory.seen("TERM")) is not now


async def test_stop_now_during_a_drain_kills_what_is_left() -> None:
    factory = FakeFactory([Start(ignores_term=True)])
    async with supervising(factory, [make_unit("users")]) as h:
        await h.supervisor.control(Stop())
        await factory.until(lambda: bool(factory.seen("TERM")))
        await h.supervisor.control(Stop(now=True))
        await factory.until(lambda: bool(factory.seen("exit")))
        assert factory.seen("KILL")[0].at == factory.seen("TERM")[0].at  # at once, not at the drain deadline


async def test_before_it_is_ready_only_status_and_stop_are_taken() -> None:
    factory = FakeFactory([Start(seconds=30)])
    supervisor, _, send, _ = build(factory, [make_unit("users")], None)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(supervisor.run)
            await factory.until(lambda: bool(factory.seen("spawn")))
            assert (await supervisor.control(Status()))["state"] == "starting"
            assert [w["state"] for w in workers(supervisor.status(), "users")] == ["starting"]
            refused = await supervisor.control(Scale("users", 2))
            assert refused == {"ok": False, "error": "still starting; try again once it is ready"}
            send.send_nowait(signal.SIGTERM)
