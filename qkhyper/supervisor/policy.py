"""Pure decisions of the supervisor, with the clock passed in.

Nothing here sleeps, signals or reads a process: the slot gathers what it
knows of a worker into a `Health` and asks `judge` what to do and
`next_check` when to ask again, so every rule is a row in a table test.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ..config.model import WorkerLimits

# How often a worker's resident memory is sampled when `max_rss_mb` is set:
# a leak grows over minutes, and one small /proc read a second per worker is nothing.
RSS_INTERVAL = 1.0
# Longest time between two heartbeats: how old a worker's counts in `status` and the metrics can be.
STATUS_INTERVAL = 1.0


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


def request_limit(limits: WorkerLimits, rng: random.Random) -> int:
    """The request count at which one new worker is recycled (0: never).

    Each worker draws its own jitter, so workers started together (a deploy,
    a SIGHUP) do not all recycle in the same second (gunicorn's reason too).
    """
    if limits.max_requests <= 0:
        return 0
    return limits.max_requests + rng.randint(0, max(limits.max_requests_jitter, 0))


def beat_interval(limits: WorkerLimits) -> float:
    """How often a worker's event loop sends a heartbeat: four per `worker_timeout`, at least one a second.

    Four per timeout, so one late beat (a long garbage collection, a burst of
    CPU-bound requests) is not yet a hang. At least one a second, also with
    `worker_timeout = 0`, because the beat carries the worker's request count
    and counters, which `qkhyper status` and the metrics endpoint show: a
    one-line write a second per worker costs nothing measurable.
    """
    if limits.worker_timeout > 0:
        return min(limits.worker_timeout / 4, STATUS_INTERVAL)
    return STATUS_INTERVAL


@dataclass(frozen=True, slots=True)
class Health:
    """What the supervisor knows of a ready worker."""

    ready_at: float
    last_beat: float  # when the last heartbeat or request count arrived; ready_at before the first
    requests: int  # as last reported
    request_limit: int  # from `request_limit`; 0 = none
    rss_mb: float | None = None  # None: not sampled (no `max_rss_mb`, or no /proc)


@dataclass(frozen=True, slots=True)
class Recycle:
    """Replace the worker by a roll; `reason` completes "worker 4121 recycled ..."."""

    reason: str


@dataclass(frozen=True, slots=True)
class Hung:
    """The worker's event loop has been silent `silent` seconds: dump its stack, kill it."""

    silent: float


Verdict = Recycle | Hung | None


def judge(limits: WorkerLimits, health: Health, now: float) -> Verdict:
    """What to do with a ready worker at `now`: nothing, recycle it, or replace it as hung.

    A hung worker is not recycled: a roll would wait for it to drain, and a
    blocked event loop drains nothing.
    """
    silent = now - max(health.last_beat, health.ready_at)
    if limits.worker_timeout > 0 and silent >= limits.worker_timeout:
        return Hung(silent)
    if health.request_limit > 0 and health.requests >= health.request_limit:
        return Recycle(f"after {health.requests} requests")
    if limits.max_lifetime > 0 and now - health.ready_at >= limits.max_lifetime:
        return Recycle(f"after {limits.max_lifetime:g} s")
    if limits.max_rss_mb > 0 and health.rss_mb is not None and health.rss_mb >= limits.max_rss_mb:
        return Recycle(f"at {health.rss_mb:.0f} MB RSS")
    return None


def next_check(limits: WorkerLimits, health: Health, now: float) -> float:
    """When `judge` could next answer differently, short of a new report (which wakes the slot anyway).

    Deadlines already passed are left out: `judge` has answered them (a
    recycle that could not be done yet waits for its retry, not for this).
    """
    deadlines = []
    if limits.worker_timeout > 0:
        deadlines.append(max(health.last_beat, health.ready_at) + limits.worker_timeout)
    if limits.max_lifetime > 0:
        deadlines.append(health.ready_at + limits.max_lifetime)
    if limits.max_rss_mb > 0:
        deadlines.append(now + RSS_INTERVAL)
    return min((deadline for deadline in deadlines if deadline > now), default=math.inf)
