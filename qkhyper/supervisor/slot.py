"""A slot keeps one worker of a unit alive: restarts it after crashes, rolls it on HUP and on recycling.

Each slot is a small actor. Its inbox receives worker exits, roll, recycle
and restart requests, so a crash, a HUP and a recycle never race over the
same worker. A guard task watches the current worker (`policy.judge`): a
reached limit sends a recycle request (a roll: the replacement is ready
before the old worker drains, so it is never a crash and never backed off);
a silent event loop gets its stack dumped and the worker killed, and the
exit then takes the crash path like any other.

Stopping does not go through the inbox: `request_stop` cancels whatever the
slot is doing (even a half-finished roll, whose new worker is then stopped
too) and the slot stops its workers, gracefully or not.

Workers come from the factory the slot is given (`worker.Worker`), so all of
this runs in-process under a MockClock with fake workers in the tests.
"""

from __future__ import annotations

import collections
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ..errors import AppStartupError
from .messages import Failed, Message, Ready
from .notify import SETTLED, SlotHealth
from .plan import Unit
from .policy import Backoff, Health, Hung, Recycle, judge, next_check, request_limit
from .worker import Worker, WorkerFactory, describe_exit

log = logging.getLogger("qkhyper.supervisor")

# Time an exited worker's last output may take to be relayed before we move on.
RELAY_GRACE = 1.0
# Time a killed worker, or one that closed its report pipe, may take to be reaped.
EXIT_GRACE = 2.0
# Time a hung worker gets to print its stack before it is killed.
STACK_TIMEOUT = 2.0


@dataclass
class _Exited:
    worker: Worker
    code: int


@dataclass
class _Restart:
    pass


@dataclass
class _Roll:
    reason: str = ""  # "" for a HUP or reload; for a recycle, what completes "recycled ..."
    worker: Worker | None = None  # a recycle replaces this worker only if it is still the current one
    done: trio.Event = field(default_factory=trio.Event)
    kept: int | None = None  # set when the replacement failed: the pid of the worker kept serving


@dataclass(frozen=True)
class SlotConfig:
    unit: Unit
    ready_timeout: float
    graceful_timeout: float

    @property
    def stop_timeout(self) -> float:
        """How long a worker may take to stop once asked: its drain, plus a second to exit."""
        return self.graceful_timeout + 1


class Slot:
    def __init__(
        self,
        config: SlotConfig,
        new_worker: WorkerFactory,
        rng: random.Random | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.new_worker = new_worker
        self.rng = rng or random.Random()
        self.on_change = on_change  # told whenever `health()` may answer differently
        self.worker: Worker | None = None
        self.live: set[Worker] = set()
        self.spawned: list[Worker] = []
        self.backoff = Backoff()
        # Replacements of the serving worker by why (status, metrics): "crash" and "hang" (a killed hung
        # worker) are exits nobody asked for; "recycle" (a reached limit) and "roll" (HUP, reload, restart).
        self.restarts: collections.Counter[str] = collections.Counter()
        self.last_exit = ""  # why the last serving worker was replaced, as `status` shows it
        self.served = False  # a first worker became ready
        self.serving_since: float | None = None  # when the current worker began serving
        self.streak = 0  # bad exits in a row: crashes and hung kills of workers that had not settled, failed restarts
        self._hung: Worker | None = None  # judged hung, being replaced
        self.graceful = True
        self.finished = trio.Event()
        self._rss_unreadable = False  # warned once that max_rss_mb cannot apply
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
                self._serve_with(tasks, await self._start(tasks))
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

    def health(self) -> SlotHealth:
        """What systemd's watchdog needs to know of this slot (notify.problems decides)."""
        return SlotHealth(self.label, self.serving_since, self.streak, self._hung is not None)

    def kill_all(self) -> None:
        for worker in list(self.live):
            worker.kill()

    async def roll(self) -> int | None:
        """Replace the worker with a fresh one, old one drained only after the new one is ready.

        Returns at once when the slot is stopping: a roll never delays a shutdown.

        Returns:
            None when the worker was replaced (or the slot is stopping); when the
            replacement failed, the pid of the worker kept (0 for none), so the
            supervisor does not report a failed roll as done.
        """
        if self._work.cancel_called:
            return None
        message = _Roll()
        self._inbox_send.send_nowait(message)
        await message.done.wait()
        return message.kept

    async def _start(self, tasks: trio.Nursery) -> Worker:
        """Spawn a worker and wait until it is ready.

        Raises:
            AppStartupError: it failed to import or start, died, or was not ready in time.
        """
        cfg = self.config
        worker = self.new_worker(cfg.unit, request_limit(cfg.unit.limits, self.rng))
        await worker.spawn(tasks)
        self.spawned = [w for w in self.spawned if not w.relayed.is_set()] + [worker]
        self.live.add(worker)
        try:
            problem = await self._wait_ready(worker)
        except BaseException:
            # Cancelled: the slot is stopping, or another worker failed to start. A
            # graceful stop lets this one finish its start-up and run its lifespan
            # shutdown, so apps that did start are shut down; the deadline still holds.
            with trio.CancelScope(shield=True):
                await self._stop_now(worker)
            self.live.discard(worker)
            raise
        if problem is not None:
            self.live.discard(worker)
            raise AppStartupError(self.label, problem)
        tasks.start_soon(self._watch, worker)
        return worker

    async def _wait_ready(self, worker: Worker) -> str | None:
        """None once `worker` is ready; else what went wrong, after it exited."""
        timeout = self.config.ready_timeout
        answer: Message | None = None
        with trio.move_on_after(timeout) as waited:
            answer = await worker.ready()
        if waited.cancelled_caught:
            worker.kill()
            await self._exit_within(worker, EXIT_GRACE)
            return f"worker (pid {worker.pid}) was not ready within {timeout:g} s"
        if isinstance(answer, Ready):
            return None
        if isinstance(answer, Failed):
            # It reports after shutting down the apps that did start, then exits by
            # itself: killing it now could cut that short.
            await self._exit_within(worker, self.config.stop_timeout)
            return answer.error
        await self._exit_within(worker, EXIT_GRACE)
        return f"worker (pid {worker.pid}) {describe_exit(worker.returncode)} before it was ready"

    async def _exit_within(self, worker: Worker, timeout: float) -> None:
        with trio.move_on_after(timeout):
            await worker.wait()
            return
        log.warning("%s: worker %d did not exit within %g s; killing it", self.label, worker.pid, timeout)
        worker.kill()
        with trio.move_on_after(EXIT_GRACE):
            await worker.wait()

    async def _stop_now(self, worker: Worker) -> None:
        if self.graceful:
            await worker.stop(self.config.stop_timeout)
        else:
            worker.kill()
            await self._exit_within(worker, EXIT_GRACE)

    def _serve_with(self, tasks: trio.Nursery, worker: Worker) -> None:
        """Make `worker` the one this slot serves with, and guard it."""
        self.worker = worker
        self.served = True
        self.serving_since = trio.current_time()
        self._hung = None
        tasks.start_soon(self._guard, worker)
        self.on_change()

    async def _watch(self, worker: Worker) -> None:
        code = await worker.wait()
        self.live.discard(worker)
        self._inbox_send.send_nowait(_Exited(worker, code))

    async def _guard(self, worker: Worker) -> None:
        """Recycle or replace `worker` as `policy.judge` says, while it is the current one."""
        async with trio.open_nursery() as guard:

            async def until_exit() -> None:
                await worker.wait()
                guard.cancel_scope.cancel()

            guard.start_soon(until_exit)
            await self._judge_until_replaced(worker)
            guard.cancel_scope.cancel()

    async def _judge_until_replaced(self, worker: Worker) -> None:
        retry_at = -math.inf  # after a failed recycle, when to try again
        retry = Backoff()
        while worker is self.worker and not self._work.cancel_called:
            limits = self.config.unit.limits
            now = trio.current_time()
            verdict = judge(limits, self._health(worker), now)
            if isinstance(verdict, Hung):
                # A heartbeat that arrived at this very moment may be unread yet: look
                # again once the report reader had its turn.
                await trio.lowlevel.checkpoint()
                verdict = judge(limits, self._health(worker), trio.current_time())
            if isinstance(verdict, Hung):
                await self._replace_hung(worker, verdict)
                return
            if isinstance(verdict, Recycle) and now >= retry_at:
                message = _Roll(verdict.reason, worker)
                self._inbox_send.send_nowait(message)
                await message.done.wait()
                now = trio.current_time()
                retry_at = now + retry.delay(now, now)
                continue
            deadline = next_check(limits, self._health(worker), now)
            await worker.heartbeat.wait(deadline if verdict is None else min(deadline, retry_at))

    def _health(self, worker: Worker) -> Health:
        beat = worker.heartbeat
        rss = None
        if self.config.unit.limits.max_rss_mb > 0:
            rss = worker.rss_mb()
            if rss is None and worker.returncode is None and not self._rss_unreadable:
                self._rss_unreadable = True
                log.warning("%s: max_rss_mb is set, but a worker's memory cannot be read here (no /proc)", self.label)
        return Health(beat.ready_at, beat.last, beat.requests, worker.request_limit, rss)

    async def _replace_hung(self, worker: Worker, verdict: Hung) -> None:
        """Dump its stack, then kill it: the exit takes the crash path (restart with back-off)."""
        log.error(
            "%s: worker %d unresponsive for %.0f s; stack follows; replacing",
            self.label,
            worker.pid,
            verdict.silent,
        )
        self._hung = worker
        self.on_change()
        await worker.dump_stack(STACK_TIMEOUT)
        worker.kill()

    async def _serve_inbox(self, tasks: trio.Nursery) -> None:
        async for message in self._inbox:
            if isinstance(message, _Exited) and message.worker is self.worker:
                self._crashed(tasks, message.worker, message.code)
            elif isinstance(message, _Restart):
                await self._restart(tasks)
            elif isinstance(message, _Roll):
                try:
                    if message.worker is None or message.worker is self.worker:
                        message.kept = await self._roll(tasks, message.reason)
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
        # A hung worker's life ended with its last heartbeat, not when it was killed.
        alive_until = worker.heartbeat.last if worker is self._hung else now
        self.streak = self.streak + 1 if alive_until - worker.started_at < SETTLED else 1
        reason = "hang" if worker is self._hung else "crash"
        self.restarts[reason] += 1
        self.last_exit = f"{reason}: worker {worker.pid} {describe_exit(code)}"
        self._hung = None
        self.serving_since = None
        self.on_change()
        fields = {"worker_app": self.label, "worker_pid": worker.pid, "exit_code": code, "restart_in_s": delay}
        log.error(
            "%s: worker %d %s; restarting in %.1f s", self.label, worker.pid, describe_exit(code), delay, extra=fields
        )
        self.worker = None
        tasks.start_soon(self._restart_later, delay)

    async def _restart_later(self, delay: float) -> None:
        await trio.sleep(delay)
        self._inbox_send.send_nowait(_Restart())

    async def _restart(self, tasks: trio.Nursery) -> None:
        if self.worker is not None:
            return
        try:
            worker = await self._start(tasks)
        except AppStartupError as exc:
            now = trio.current_time()
            delay = self.backoff.delay(now, now)
            self.streak += 1
            self.on_change()
            log.error("%s; retrying in %.1f s", exc, delay)
            tasks.start_soon(self._restart_later, delay)
            return
        self._serve_with(tasks, worker)
        log.info("%s: worker %d is serving", self.label, worker.pid)

    async def _roll(self, tasks: trio.Nursery, reason: str) -> int | None:
        """Replace the worker; None when done, else the pid of the worker kept (0: none)."""
        old = self.worker
        try:
            new = await self._start(tasks)
        except AppStartupError as exc:
            kept = f"keeping worker {old.pid}" if old else "no worker to keep"
            log.error("%s: %s failed, %s: %s", self.label, "recycling" if reason else "rolling restart", kept, exc)
            return old.pid if old else 0
        self._serve_with(tasks, new)
        if old is None:
            log.info("%s: worker %d is serving", self.label, new.pid)
            return None
        self.restarts["recycle" if reason else "roll"] += 1
        self.last_exit = f"recycle: worker {old.pid} {reason}" if reason else f"roll: worker {old.pid} replaced"
        if reason:
            log.info("%s: worker %d recycled %s (new %d)", self.label, old.pid, reason, new.pid)
        else:
            log.info("%s: worker %d replaced by %d; draining the old one", self.label, old.pid, new.pid)
        tasks.start_soon(old.stop, self.config.stop_timeout)
        return None

    async def _stop_all(self) -> None:
        async with trio.open_nursery() as stopping:
            for worker in list(self.live):
                stopping.start_soon(self._stop_now, worker)

    async def _kill_leftovers(self) -> None:
        """On cancellation or error, no worker outlives its slot."""
        with trio.CancelScope(shield=True), trio.move_on_after(EXIT_GRACE):
            for worker in list(self.live):
                worker.kill()
                await worker.wait()
