"""`ProcessWorker.stop` with a scripted process on MockClock: overlapping stops log the exit once.

A roll drains an old worker with `stop` while a SIGTERM to the supervisor
stops every live worker, that one included: both wait for the same exit,
and the log says once how it ended (it said it twice before).
"""

from __future__ import annotations

import io
import logging
import signal
import socket
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from qkhyper.logs import LabelWriter
from qkhyper.supervisor.process import ProcessWorker
from tests.supervisor.test_systemd import make_unit

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


class ScriptedProcess:
    """Stands in for `trio.Process`: exits `term_after` seconds after SIGTERM (never: None), at once on SIGKILL."""

    pid = 4242

    def __init__(self, term_after: float | None) -> None:
        self.term_after = term_after
        self.returncode: int | None = None
        self.signals: list[int] = []
        self._exited = trio.Event()
        self._nursery: trio.Nursery | None = None

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)
        if signum == signal.SIGKILL:
            self.exit(-signal.SIGKILL)
        elif signum == signal.SIGTERM and self.term_after is not None and self._nursery is not None:
            self._nursery.start_soon(self._exit_later, self.term_after)

    async def _exit_later(self, seconds: float) -> None:
        await trio.sleep(seconds)
        self.exit(0)

    def exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode


def scripted_worker(nursery: trio.Nursery, term_after: float | None) -> tuple[ProcessWorker, ScriptedProcess]:
    sock = socket.socket()
    worker = ProcessWorker(make_unit("users"), sock, -1, LabelWriter(io.StringIO(), ["users"], colour=False))
    sock.close()
    process = ScriptedProcess(term_after)
    process._nursery = nursery
    worker.process = process  # type: ignore[assignment]
    return worker, process


def exits(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("users: worker 4242")]


async def test_overlapping_stops_log_the_exit_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    codes: list[int] = []
    async with trio.open_nursery() as nursery:
        worker, _ = scripted_worker(nursery, term_after=1.0)

        async def stop() -> None:
            codes.append(await worker.stop(10))

        nursery.start_soon(stop)
        nursery.start_soon(stop)
    assert codes == [0, 0]
    assert exits(caplog) == ["users: worker 4242 exited with code 0"]


async def test_a_kill_during_two_stops_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    codes: list[int] = []
    async with trio.open_nursery() as nursery:
        worker, process = scripted_worker(nursery, term_after=None)

        async def stop() -> None:
            codes.append(await worker.stop(10))

        nursery.start_soon(stop)
        nursery.start_soon(stop)
        await trio.sleep(1)
        worker.kill()  # a second Ctrl-C: kill every worker now
    assert codes == [-9, -9]
    assert exits(caplog) == ["users: worker 4242 was killed by SIGKILL"]
    assert process.signals == [signal.SIGTERM, signal.SIGTERM, signal.SIGKILL]


async def test_a_stop_past_its_deadline_kills_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with trio.open_nursery() as nursery:
        worker, process = scripted_worker(nursery, term_after=None)
        assert await worker.stop(4) == -9
    assert exits(caplog) == ["users: worker 4242 did not stop within 4 s; killing it"]
    assert process.signals == [signal.SIGTERM, signal.SIGKILL]
