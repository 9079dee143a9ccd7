"""Keeping systemd informed: READY/RELOADING/STOPPING as they happen, STATUS on change, the watchdog ping.

The supervisor calls `ready`, `reloading` and `stopping` at those moments,
and `changed` whenever a slot gains or loses a worker; `run` (started once
the supervisor is ready) sends a new STATUS= line when the view changed and
pings the watchdog every `watchdog_every` seconds while `notify.problems`
finds nothing wrong. Decisions are `notify.py`'s; sending is the injected
`Notifier`'s; the clock is trio's, so the tests run it under MockClock.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable

import trio

from . import notify
from .notifier import Notifier
from .notify import SlotHealth, View

log = logging.getLogger("qkhyper.supervisor")


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds: the clock systemd compares `MONOTONIC_USEC=` with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class SystemdReporter:
    """The supervisor's voice to systemd: it knows what was last said, so STATUS= goes out only on change."""

    def __init__(
        self,
        notifier: Notifier,
        watchdog_every: float | None,
        view: Callable[[], View],
        health: Callable[[], list[SlotHealth]],
        clock_usec: Callable[[], int] = monotonic_usec,
    ) -> None:
        self.notifier = notifier
        self.watchdog_every = watchdog_every
        self.view = view
        self.health = health
        self.clock_usec = clock_usec
        self.reloading_announced = False  # RELOADING=1 sent, READY=1 not yet
        self._status: str | None = None
        self._changed = trio.Event()
        self._problems: list[str] = []  # why the watchdog is not pinged now

    def changed(self) -> None:
        self._changed.set()

    def starting(self, text: str) -> None:
        self._send_status(text)

    def ready(self) -> None:
        """After the ready table, and after a roll that systemd was told about."""
        self.reloading_announced = False
        self._status = notify.status_line(self.view())
        self.notifier.send(notify.ready(self._status))

    def reloading(self, text: str) -> None:
        self.reloading_announced = True
        self._status = text
        self.notifier.send(notify.reloading(self.clock_usec(), text))

    def stopping(self) -> None:
        self._status = notify.status_line(self.view())
        self.notifier.send(notify.stopping(self._status))

    def _send_status(self, text: str) -> None:
        if text != self._status:
            self._status = text
            self.notifier.send(notify.status(text))

    async def run(self) -> None:
        """Until cancelled: a STATUS= line per change, and the watchdog ping while every slot is healthy."""
        next_ping = trio.current_time()
        while True:
            self._changed = trio.Event()
            now = trio.current_time()
            view = self.view()
            slots = self.health()
            found = [] if view.draining else notify.problems(slots, now)
            self._send_status(notify.status_line(dataclasses.replace(view, problems=found)))
            wake = math.inf
            if self.watchdog_every is not None:
                self._pause(found)
                if not found and now >= next_ping:
                    self.notifier.send(notify.WATCHDOG)
                    next_ping = now + self.watchdog_every
                settles = notify.settles_at(slots, now)
                wake = next_ping if not found else math.inf if settles is None else settles
            with trio.move_on_at(wake):
                await self._changed.wait()

    def _pause(self, found: list[str]) -> None:
        """Say when the pings stop and why, again when the reason changes (down, then looping), and when they resume."""
        if found and found != self._problems:
            log.warning(
                "watchdog: not pinging systemd while %s (it restarts qkhyper after WatchdogSec=)", "; ".join(found)
            )
        elif self._problems and not found:
            log.info("watchdog: every app is healthy again; pinging systemd")
        self._problems = found
