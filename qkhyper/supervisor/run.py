"""`serve`: one trio nursery owns every worker process.

Order of events: bind every socket (a clash is exit 2 before anything runs),
record the ports, start every worker and wait until each reports its lifespan
startup done, print the ready table, then react to signals until a shutdown.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import trio

from ..config.portentries import PortEntry
from ..config.portmap import recorded_ports
from ..control.protocol import Reload, Request, Restart, Scale, Status, Stop, failed, ok
from ..control.server import control_listener, serve_control
from ..errors import QkhyperError
from ..logs import SUPERVISOR_LABEL, LogWriter, format_table
from ..metrics.endpoint import MetricsEndpoint, metrics_endpoint
from ..tls import url_scheme
from .notifier import NoNotifier, Notifier
from .notify import SlotHealth, View, starting_status, status_line
from .plan import ServePlan, Unit
from .process import ProcessWorker
from .reaper import reap_forever
from .reload import WatchPlan, watch
from .signals import HANDLED, Command, command_for
from .slot import Slot, SlotConfig
from .sockets import bound_sockets, listen_url, port_entry
from .status import slot_rows
from .systemd import SystemdReporter
from .worker import Worker

log = logging.getLogger("qkhyper.supervisor")


class Lifeline:
    """A pipe whose write end only the supervisor holds; children exit on EOF."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()  # both close-on-exec; the read end is passed explicitly

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


# Makes a worker for `unit` with its request limit, for the slot numbered `number` (1, 2, ... per unit).
MakeWorker = Callable[[Unit, int, int], Worker]
# Opens the stream of signals the supervisor handles: trio.open_signal_receiver, or a test's channel.
OpenSignals = Callable[..., AbstractContextManager[AsyncIterator[int]]]


@dataclasses.dataclass(frozen=True)
class Systemd:
    """What systemd asked of us (notify.py): where notifications go, and how often to ping its watchdog."""

    notifier: Notifier = dataclasses.field(default_factory=NoNotifier)
    watchdog_every: float | None = None


@dataclasses.dataclass(frozen=True)
class Reloader:
    """`--reload`: what to watch, and how to re-read the config when it changes."""

    watch_plan: WatchPlan
    replan: Callable[[], ServePlan]


class Supervisor:
    def __init__(
        self,
        plan: ServePlan,
        sockets: dict[str, socket.socket],
        writer: LogWriter,
        reloader: Reloader | None = None,
        *,
        systemd: Systemd | None = None,
        make_worker: MakeWorker | None = None,
        open_signals: OpenSignals = trio.open_signal_receiver,
        control: socket.socket | None = None,
        replan: Callable[[], ServePlan] | None = None,
        metrics: MetricsEndpoint | None = None,
    ) -> None:
        self.plan = plan
        self.metrics = metrics  # /metrics, /healthz, /readyz (metrics_port), bound by `supervise`
        self.reloader = reloader
        self.control_socket = control  # listening, bound by `supervise`; None: no control socket
        # How `qkhyper reload` re-reads the config (the reloader's, when --reload is on).
        self.replan = replan or (reloader.replan if reloader is not None else None)
        self.sockets = sockets
        # Read once: the sockets are closed when a drain begins, and `status` still answers then.
        self.urls = {
            unit.label: listen_url(sockets[unit.label], url_scheme(unit.child.tls))
            for unit in plan.units
            if unit.label in sockets
        }
        self.writer = writer
        self.lifeline = Lifeline()
        self.slots: dict[str, list[Slot]] = {unit.label: [] for unit in plan.units}
        self.numbers: dict[Slot, int] = {}  # each slot's number within its unit, shown in its workers' titles
        self.retiring: list[Slot] = []  # removed by SIGTTOU, still draining
        self.ready = False
        self.draining = False
        self.exit_code = 0
        self.rolling: str | None = None  # the unit a roll (SIGHUP, --reload) is at, for the STATUS= line
        self.make_worker = make_worker or self._process_worker
        self.open_signals = open_signals
        systemd = systemd or Systemd()
        self.systemd = SystemdReporter(systemd.notifier, systemd.watchdog_every, self._view, self._health)
        self._starting = trio.CancelScope()
        self._roll_lock = trio.Lock()
        self._stopped = trio.Event()
        self._nursery: trio.Nursery | None = None  # the one the slots run in, once `run` opened it
        self.started_at = 0.0

    async def run(self, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED) -> int:
        try:
            with self.open_signals(*HANDLED) as signals:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self.started_at = trio.current_time()
                    nursery.start_soon(self._handle_signals, signals, nursery)
                    if self.control_socket is not None:
                        nursery.start_soon(serve_control, self.control_socket, self)
                    if self.metrics is not None:
                        nursery.start_soon(self.metrics.serve, self)
                    if os.getpid() == 1:
                        nursery.start_soon(reap_forever, self._worker_pids)
                    view = self._view()
                    self.systemd.starting(starting_status(view.labels, view.apps, view.workers))
                    with self._starting:
                        await self._start_or_stop_all(nursery)
                    if not self.draining:
                        self.ready = True
                        self._print_table()
                        self.systemd.ready()  # after the table: both say the same thing, to the two audiences
                        nursery.start_soon(self.systemd.run)
                        task_status.started(self)
                        if self.reloader is not None:
                            nursery.start_soon(watch, self.reloader.watch_plan, self._on_change)
                    await self._stopped.wait()
                    nursery.cancel_scope.cancel()
        finally:
            self.lifeline.close()
        log.info("stopped (exit code %d)", self.exit_code, extra={"exit_code": self.exit_code})
        return self.exit_code

    def _slot_config(self, unit: Unit) -> SlotConfig:
        return SlotConfig(unit, self.plan.ready_timeout, self.plan.graceful_timeout)

    def _process_worker(self, unit: Unit, request_limit: int, number: int) -> Worker:
        title = f"qkhyper: {unit.label} worker {number}"
        sink = self.metrics.store if self.metrics is not None else None
        sock = self.sockets[unit.label]
        return ProcessWorker(unit, sock, self.lifeline.read_fd, self.writer, request_limit, title, sink)

    async def _start_or_stop_all(self, nursery: trio.Nursery) -> None:
        """Start every worker; if one fails, stop the others as a SIGTERM would, then re-raise.

        Workers that are ready drain and run their apps' lifespan shutdown, and
        so do those still starting (each within the drain deadline), instead
        of being killed as the nursery unwinds.
        """
        try:
            await self._start_all(nursery)
        except BaseException:
            if not self.draining:
                log.info("start failed: stopping the workers that started, as on SIGTERM")
                self._shutdown(nursery, graceful=True)
                with trio.CancelScope(shield=True):
                    await self._stopped.wait()
            raise

    async def _start_all(self, nursery: trio.Nursery) -> None:
        async with trio.open_nursery() as starting:
            for unit in self.plan.units:
                for _ in range(unit.workers):
                    starting.start_soon(self._add_slot, nursery, unit)

    async def _add_slot(self, nursery: trio.Nursery, unit: Unit) -> Slot:
        group = self.slots[unit.label]
        taken = {self.numbers[slot] for slot in group}
        number = min(n for n in range(1, len(group) + 2) if n not in taken)  # a number freed by SIGTTOU is reused

        def new_worker(unit: Unit, request_limit: int) -> Worker:
            return self.make_worker(unit, request_limit, number)

        slot = Slot(self._slot_config(unit), new_worker, on_change=self.systemd.changed)
        group.append(slot)
        self.numbers[slot] = number
        try:
            await nursery.start(slot.run)
        except BaseException:
            group.remove(slot)
            del self.numbers[slot]
            raise
        finally:
            self.systemd.changed()
        return slot

    def _worker_pids(self) -> set[int]:
        return {worker.pid for slot in self._all_slots() for worker in slot.spawned}

    def _all_slots(self) -> list[Slot]:
        return [slot for group in self.slots.values() for slot in group] + self.retiring

    async def _handle_signals(self, signals: AsyncIterator[int], nursery: trio.Nursery) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            command = command_for(signum, self.draining)
            log.info("%s: %s", name, command.value)
            if command in (Command.DRAIN, Command.QUIT) and not self.draining:
                self._shutdown(nursery, graceful=command is Command.DRAIN)
            elif command in (Command.KILL, Command.QUIT):
                self.exit_code = 1 if command is Command.KILL else self.exit_code
                for slot in self._all_slots():
                    slot.kill_all()
            elif command in (Command.IGNORE, Command.KEEP_DRAINING):
                continue
            elif not self.ready or self.draining:
                log.info("%s ignored: %s", name, "shutting down" if self.draining else "still starting")
            elif command is Command.ROLL:
                self._start_roll(nursery)
            elif command is Command.SCALE_UP:
                for unit in self.plan.units:
                    nursery.start_soon(self._scale_up, nursery, unit)
            elif command is Command.SCALE_DOWN:
                self._scale_down()

    def _shutdown(self, nursery: trio.Nursery, graceful: bool) -> None:
        self.draining = True
        self.systemd.stopping()
        self._starting.cancel()
        # The workers hold their own copies of the listening sockets and close them
        # as they start draining; once ours are closed too, new connections are
        # refused at once instead of waiting in a backlog nobody will accept from.
        for sock in self.sockets.values():
            sock.close()
        slots = self._all_slots()
        for slot in slots:
            slot.request_stop(graceful)
        nursery.start_soon(self._await_stopped, slots)

    async def _await_stopped(self, slots: list[Slot]) -> None:
        for slot in slots:
            await slot.finished.wait()
        self._stopped.set()

    def _start_roll(self, nursery: trio.Nursery) -> None:
        """SIGHUP: roll every worker, and tell systemd a reload began (READY=1 follows when the roll is done).

        A SIGHUP during a roll is told too, with its own time, and the running
        roll's end answers it: `Type=notify-reload` waits for exactly that.
        """
        running = self._roll_lock.locked()
        self.systemd.reloading(
            status_line(dataclasses.replace(self._view(), rolling=self.rolling or self._labels()[0]))
        )
        if running:
            log.info("a rolling restart is already running")
            return
        nursery.start_soon(self._roll, set(self.slots))

    async def _roll(self, labels: set[str]) -> None:
        """Roll slot by slot, so the other workers keep serving meanwhile.

        Ends with "rolling restart done" only when every replacement served;
        otherwise "rolling restart failed for APP: kept worker PID" (each slot
        logged why), so `--reload`, SIGHUP and `qkhyper restart` never claim new
        code that is not running. systemd hears READY=1 either way: the old
        workers serve, and `Type=notify-reload` waits for it to end the reload.
        """
        kept: dict[str, list[int]] = {}
        async with self._roll_lock:
            try:
                for label in [label for label in self._labels() if label in labels]:
                    self.rolling = label
                    self.systemd.changed()
                    for slot in list(self.slots[label]):
                        if self.draining:
                            return
                        pid = await slot.roll()
                        if pid is not None:
                            kept.setdefault(label, []).append(pid)
            finally:
                self.rolling = None
                self.systemd.changed()
            if kept:
                log.error("rolling restart failed %s", roll_failures(kept))
            else:
                log.info("rolling restart done: %s", self._pid_summary())
            if self.systemd.reloading_announced:
                self.systemd.ready()

    async def _on_change(self, labels: set[str], config_changed: bool) -> None:
        assert self.reloader is not None
        if config_changed:
            try:
                self._apply_plan(self.reloader.replan())
            except QkhyperError as exc:
                log.error("config change not applied, workers keep serving: %s", exc)
                return
        log.info("change detected: rolling %s", ", ".join(sorted(labels)))
        await self._roll(labels)

    def _apply_plan(self, plan: ServePlan) -> None:
        """Give the slots the re-read config; sockets and worker counts need a restart."""
        old = {unit.label: unit for unit in self.plan.units}
        for unit in plan.units:
            before = old.get(unit.label)
            if before is None or (before.host, before.port, before.unix) != (unit.host, unit.port, unit.unix):
                log.warning("%s: new or moved app needs a restart of qkhyper to take effect", unit.label)
                continue
            for slot in self.slots[unit.label]:
                slot.config = dataclasses.replace(slot.config, unit=unit)
        self.plan = dataclasses.replace(plan, units=[u for u in plan.units if u.label in old])

    async def _scale_up(self, nursery: trio.Nursery, unit: Unit) -> None:
        try:
            slot = await self._add_slot(nursery, unit)
        except Exception as exc:  # a failed extra worker is logged; the others keep serving
            log.error("%s: could not add a worker: %s", unit.label, exc)
            return
        pid = slot.worker.pid if slot.worker else 0
        self.systemd.changed()
        log.info("%s: added worker %d (%d now)", unit.label, pid, len(self.slots[unit.label]))

    def _scale_down(self) -> None:
        for label, group in self.slots.items():
            if len(group) <= 1:
                log.info("%s: keeping its last worker", label)
                continue
            self._retire(label)

    def _retire(self, label: str) -> Slot:
        """Take the last slot of `label` out of service and drain its worker."""
        group = self.slots[label]
        slot = group.pop()
        del self.numbers[slot]
        self.systemd.changed()
        self.retiring = [s for s in self.retiring if not s.finished.is_set()] + [slot]
        slot.request_stop(graceful=True)
        log.info("%s: removing a worker (%d left)", label, len(group))
        return slot

    def status(self) -> dict[str, Any]:
        """What `qkhyper status` shows: this supervisor, and per app its address and workers (status.py)."""
        now = trio.current_time()
        apps = []
        for unit in self.plan.units:
            group = self.slots.get(unit.label, [])
            workers = [
                row for slot in group for row in slot_rows(slot, self.numbers[slot], now, draining=self.draining)
            ]
            workers += [
                row
                for slot in self.retiring
                if slot.label == unit.label
                for row in slot_rows(slot, 0, now, draining=True)
            ]
            apps.append(
                {
                    "name": unit.label,
                    "apps": [ref.name for ref in unit.child.apps],
                    "prefixes": ["/" + p for p in unit.prefixes],
                    "url": self.urls.get(unit.label, "-"),
                    "backend": unit.child.backend,
                    "workers_wanted": len(group),
                    "workers": workers,
                }
            )
        state = "draining" if self.draining else "ready" if self.ready else "starting"
        return {
            "server": self.plan.server,
            "pid": os.getpid(),
            "uptime_s": round(now - self.started_at, 1),
            "config": self.plan.source,
            "state": state,
            "rolling": self.rolling,
            "apps": apps,
        }

    async def control(self, request: Request) -> dict[str, Any]:
        """Answer a request from the control socket (control/protocol.py): what `qkhyper status/...` send."""
        if isinstance(request, Status):
            return ok(**self.status())
        if isinstance(request, Stop):
            return self._control_stop(request.now)
        if self.draining or not self.ready or self._nursery is None:
            return failed("shutting down" if self.draining else "still starting; try again once it is ready")
        if isinstance(request, Restart):
            labels = self._units_named(request.apps)
            if isinstance(labels, str):
                return failed(labels)
            log.info("control: restart %s", ", ".join(labels))
            return await self._changed_by(labels, self._roll(set(labels)))
        if isinstance(request, Scale):
            labels = self._units_named([request.app])
            if isinstance(labels, str):
                return failed(labels)
            log.info("control: scale %s to %d", labels[0], request.workers)
            return await self._changed_by(labels, self._scale_to(self._nursery, labels[0], request.workers))
        assert isinstance(request, Reload)
        return await self._control_reload()

    def _control_stop(self, now: bool) -> dict[str, Any]:
        log.info("control: stop%s", " now" if now else "")
        assert self._nursery is not None
        if not self.draining:
            self._shutdown(self._nursery, graceful=not now)
        elif now:
            for slot in self._all_slots():
                slot.kill_all()
        return ok(pid=os.getpid(), stopping=True)

    async def _control_reload(self) -> dict[str, Any]:
        if self.replan is None:
            return failed("this supervisor cannot re-read its config")
        try:
            plan = self.replan()
        except QkhyperError as exc:
            log.error("config change not applied, workers keep serving: %s", exc)
            return failed(f"config not applied, workers keep serving: {exc}")
        log.info("control: reload: config re-read, rolling every app")
        self._apply_plan(plan)
        return await self._changed_by(self._labels(), self._roll(set(self._labels())))

    def _units_named(self, names: Sequence[str]) -> list[str] | str:
        """The unit labels serving `names` (an app, or the `--aio` unit that holds it); else the error."""
        found: list[str] = []
        for name in names:
            units = [u.label for u in self.plan.units if name == u.label or name in [r.name for r in u.child.apps]]
            if not units:
                return f"no app {name!r} here; apps: {', '.join(self._labels())}"
            found += [label for label in units if label not in found]
        return found

    async def _changed_by(self, labels: list[str], action: Awaitable[None]) -> dict[str, Any]:
        """Run `action`, then answer with each unit's serving pids before and after it."""
        before = {label: self._pid_list(label) for label in labels}
        await action
        changed = {label: {"before": before[label], "after": self._pid_list(label)} for label in labels}
        return ok(changed=changed)

    def _pid_list(self, label: str) -> list[int]:
        return [slot.worker.pid for slot in self.slots[label] if slot.worker]

    async def _scale_to(self, nursery: trio.Nursery, label: str, workers: int) -> None:
        """Add or remove workers of one unit until it has `workers`; removed ones are drained before this returns."""
        group = self.slots[label]
        unit = next(u for u in self.plan.units if u.label == label)
        if workers > len(group):
            async with trio.open_nursery() as adding:
                for _ in range(workers - len(group)):
                    adding.start_soon(self._scale_up, nursery, unit)
            return
        removed = []
        while len(group) > workers:
            removed.append(self._retire(label))
        for slot in removed:
            await slot.finished.wait()

    def _labels(self) -> list[str]:
        return [unit.label for unit in self.plan.units]

    def _view(self) -> View:
        """What the STATUS= line is made from (notify.status_line)."""
        if self.ready:  # the slots that have served: one SIGTTIN adds is counted once its worker is ready
            workers = sum(slot.served for group in self.slots.values() for slot in group)
        else:
            workers = sum(unit.workers for unit in self.plan.units)
        apps = sum(len(unit.child.apps) for unit in self.plan.units)
        return View(self._labels(), apps, workers, self.rolling, self.draining)

    def _health(self) -> list[SlotHealth]:
        # A slot still starting its first worker (SIGTTIN) is not unhealthy yet: its start has its own deadline.
        return [slot.health() for group in self.slots.values() for slot in group if slot.served]

    def _pid_summary(self) -> str:
        return "; ".join(f"{label} {self._pids(label)}" for label in self.slots)

    def _pids(self, label: str) -> str:
        return ", ".join(str(s.worker.pid) for s in self.slots[label] if s.worker) or "-"

    def _print_table(self) -> None:
        rows = [("app", "prefix", "url", "pids")]
        for unit in self.plan.units:
            url = self.urls[unit.label]
            rows.append((unit.label, " ".join("/" + p for p in unit.prefixes), url, self._pids(unit.label)))
        for line in format_table(rows):
            self.writer.line(SUPERVISOR_LABEL, line)
        workers = sum(len(group) for group in self.slots.values())
        apps = sum(len(unit.child.apps) for unit in self.plan.units)
        log.info("ready: %d app(s), %d worker(s); Ctrl-C to stop", apps, workers)


def port_map_entries(plan: ServePlan, sockets: dict[str, socket.socket]) -> dict[str, PortEntry]:
    entries: dict[str, PortEntry] = {}
    for unit in plan.units:
        for ref in unit.child.apps:
            prefix = "/" + (ref.prefix or unit.prefixes[0])
            entries[ref.name] = port_entry(sockets[unit.label], prefix, bool(ref.prefix))
    return entries


def _port_map(plan: ServePlan, sockets: dict[str, socket.socket]) -> AbstractContextManager[None]:
    if not plan.port_map:
        return nullcontext()
    return recorded_ports(Path(plan.port_map), port_map_entries(plan, sockets), config=plan.source)


async def supervise(
    plan: ServePlan,
    writer: LogWriter,
    reloader: Reloader | None = None,
    *,
    systemd: Systemd | None = None,
    replan: Callable[[], ServePlan] | None = None,
    task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Run `plan` until a signal stops it; return the exit code.

    Raises:
        ConfigError: a port is taken, the metrics port included (before any worker starts).
        AppStartupError: a worker failed to import, start or get ready.
    """
    with (
        bound_sockets(plan.units, plan.passed) as sockets,
        _port_map(plan, sockets),
        metrics_endpoint(plan.metrics) as metrics,
        control_listener(plan.control_socket) as control,
    ):
        supervisor = Supervisor(
            plan, sockets, writer, reloader, systemd=systemd, control=control, replan=replan, metrics=metrics
        )
        return await supervisor.run(task_status)


def roll_failures(kept: dict[str, list[int]]) -> str:
    """`for users: kept worker 1234; for orders: kept workers 5, 6`: the slots whose replacement failed."""
    parts = []
    for label, pids in kept.items():
        alive = [str(pid) for pid in pids if pid]
        if not alive:
            parts.append(f"for {label}: no worker to keep")
        else:
            parts.append(f"for {label}: kept worker{'s' if len(alive) > 1 else ''} {', '.join(alive)}")
    return "; ".join(parts)
