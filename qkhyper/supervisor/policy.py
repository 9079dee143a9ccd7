"""Pure decisions of the supervisor, with the clock passed in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    """Restart delay for a crashing worker: 0.5 s doubling to 30 s.

    A worker that stayed up `reset_after` seconds earns a fresh start, so one
    crash a day restarts at once while a crash loop slows to one try per 30 s
    instead of spinning (gunicorn and uvicorn respawn in a tight loop).
    """

    initial: float = 0.5
    maximum: float = 30.0
    reset_after: float = 60.0
    _next: float = 0.0

    def delay(self, started_at: float, now: float) -> float:
        """The wait before restarting a worker that started at `started_at` and died at `now`."""
        if self._next == 0.0 or now - started_at >= self.reset_after:
            self._next = self.initial
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay
