"""A slot keeps one worker of a unit alive: restarts after crashes, rolls on HUP.

Each slot is a small actor. Its inbox receives worker exits and roll/restart
requests, so a crash and a HUP never race over the same worker. Stopping does
not go through the inbox: `request_stop` cancels whatever the slot is doing
(even a half-finished roll, whose new worker is then killed) and the slot
stops its workers, gracefully or not.
"""

from __future__ import annotations

import logging
import math
import socket
from dataclasses import dataclass, field

import trio

from ..errors import AppStartupError
from ..logs import LabelWriter
from .plan import Unit
from .policy import Backoff
from .worker import Worker, describe_exit

log = logging.getLogger("qkhyper.supervisor")

# Time an exited worker's last output may take to be relayed before we move on.
RELAY_GRACE = 1.0


@dataclass
class _Exited:
    worker: Worker
    code: int


@dataclass
class _Restart:
    pass


@dataclass
class _Roll:
    done: trio.Event = field(default_factory=trio.Event)


@dataclass(frozen=True)
class SlotConfig:
    unit: Unit
    sock: socket.socket
    lifeline: int
    writer: LabelWriter
    ready_timeout: float
    graceful_timeout: float


class Slot:
    def __init__(self, config: SlotConfig) -> None:
        self.config = config
        self.worker: Worker | None = None
        self.live: set[Worker] = set()
        self.spawned: list[Worker] = []
        self.backoff = Backoff()
        self.graceful = True
        self.finished = trio.Event()
        self._inbox_send, self._inbox = trio.open_memory_channel[object](math.inf)
        self._work = trio.CancelScope()

    @property
    def label(self) -> str:
        return self.config.unit.label

    async def run(self, *, task_status: trio.TaskStatus[Slot] = trio.TASK_STATUS_IGNORED) -> None:
        """Start a worker, report started once it is ready, then keep it alive until stopped.

        Raises:
            AppStartupError: the first worker failed to import, start or get ready.
        """
        try:
            async with trio.open_nursery() as tasks:
                self.worker = await self._start(tasks)
                task_status.started(self)
                with self._work:
                    await self._serve_inbox(tasks)
                self._release_pending_rolls()
                await self._stop_all()
                with trio.move_on_after(RELAY_GRACE):
                    for worker in self.spawned:
                        await worker.relayed.wait()
                tasks.cancel_scope.cancel()
        finally:
            await self._kill_leftovers()
            self.finished.set()

    def request_stop(self, graceful: bool) -> None:
        self.graceful = graceful
        self._work.cancel()

    def kill_all(self) -> None:
        for worker in list(self.live):
            worker.kill()

    async def roll(self) -> None:
        """Replace the worker with a fresh one, old one drained only after the new one is ready.

        Returns at once when the slot is stopping: a roll never delays a shutdown.
        """
        if self._work.cancel_called:
            return
        message = _Roll()
        self._inbox_send.send_nowait(message)
        await message.done.wait()

    async def _start(self, tasks: trio.Nursery) -> Worker:
        cfg = self.config
        worker = Worker(cfg.unit, cfg.sock, cfg.lifeline, cfg.writer)
        await worker.spawn(tasks)
        self.spawned = [w for w in self.spawned if not w.relayed.is_set()] + [worker]
        self.live.add(worker)
        try:
            await worker.wait_ready(cfg.ready_timeout)
        except BaseException:
            worker.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await worker.wait()
            self.live.discard(worker)
            raise
        tasks.start_soon(self._watch, worker)
        return worker

    async def _watch(self, worker: Worker) -> None:
        code = await worker.wait()
        self.live.discard(worker)
        self._inbox_send.send_nowait(_Exited(worker, code))

    async def _serve_inbox(self, tasks: trio.Nursery) -> None:
        async for message in self._inbox:
            if isinstance(message, _Exited) and message.worker is self.worker:
                self._crashed(tasks, message.worker, message.code)
            elif isinstance(message, _Restart):
                await self._restart(tasks)
            elif isinstance(message, _Roll):
                try:
                    await self._roll(tasks)
                finally:
                    message.done.set()

    def _release_pending_rolls(self) -> None:
        while True:
            try:
                message = self._inbox.receive_nowait()
            except trio.WouldBlock:
                return
            if isinstance(message, _Roll):
                message.done.set()

    def _crashed(self, tasks: trio.Nursery, worker: Worker, code: int) -> None:
        now = trio.current_time()
        delay = self.backoff.delay(worker.started_at, now)
        log.error("%s: worker %d %s; restarting in %.1f s", self.label, worker.pid, describe_exit(code), delay)
        self.worker = None
        tasks.start_soon(self._restart_later, delay)

    async def _restart_later(self, delay: float) -> None:
        await trio.sleep(delay)
        self._inbox_send.send_nowait(_Restart())

    async def _restart(self, tasks: trio.Nursery) -> None:
        if self.worker is not None:
            return
        try:
            self.worker = await self._start(tasks)
        except AppStartupError as exc:
            now = trio.current_time()
            delay = self.backoff.delay(now, now)
            log.error("%s; retrying in %.1f s", exc, delay)
            tasks.start_soon(self._restart_later, delay)
            return
        log.info("%s: worker %d is serving", self.label, self.worker.pid)

    async def _roll(self, tasks: trio.Nursery) -> None:
        old = self.worker
        try:
            new = await self._start(tasks)
        except AppStartupError as exc:
            kept = f"keeping worker {old.pid}" if old else "no worker to keep"
            log.error("%s: rolling restart failed, %s: %s", self.label, kept, exc)
            return
        self.worker = new
        if old is not None:
            log.info("%s: worker %d replaced by %d; draining the old one", self.label, old.pid, new.pid)
            tasks.start_soon(old.stop, self.config.graceful_timeout + 1)
        else:
            log.info("%s: worker %d is serving", self.label, new.pid)

    async def _stop_all(self) -> None:
        async with trio.open_nursery() as stopping:
            for worker in list(self.live):
                if self.graceful:
                    stopping.start_soon(worker.stop, self.config.graceful_timeout + 1)
                else:
                    worker.kill()
                    stopping.start_soon(worker.wait)

    async def _kill_leftovers(self) -> None:
        """On cancellation or error, no worker outlives its slot."""
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            for worker in list(self.live):
                worker.kill()
                await worker.wait()
