"""The supervisor's pure decisions, as tables: back-off, signals, recycling and the watchdog."""

from __future__ import annotations

import math
import random
import signal

import pytest

from qkhyper.config.model import WorkerLimits
from qkhyper.supervisor.policy import (
    Backoff,
    Health,
    Hung,
    Recycle,
    Verdict,
    beat_interval,
    judge,
    next_check,
    request_limit,
)
from qkhyper.supervisor.signals import Command, command_for


def test_backoff_doubles_to_the_cap() -> None:
    backoff = Backoff()
    delays = [backoff.delay(started_at=t, now=t + 1) for t in range(10)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]


def test_backoff_resets_after_a_minute_up() -> None:
    backoff = Backoff()
    for t in range(5):
        backoff.delay(started_at=t, now=t + 1)
    assert backoff.delay(started_at=100, now=160) == 0.5
    assert backoff.delay(started_at=160, now=161) == 1


@pytest.mark.parametrize(
    ("signum", "draining", "command"),
    [
        (signal.SIGINT, False, Command.DRAIN),
        (signal.SIGTERM, False, Command.DRAIN),
        (signal.SIGINT, True, Command.KILL),
        (signal.SIGTERM, True, Command.KEEP_DRAINING),
        (signal.SIGQUIT, False, Command.QUIT),
        (signal.SIGQUIT, True, Command.QUIT),
        (signal.SIGHUP, False, Command.ROLL),
        (signal.SIGTTIN, False, Command.SCALE_UP),
        (signal.SIGTTOU, False, Command.SCALE_DOWN),
        (signal.SIGUSR1, False, Command.IGNORE),
        (signal.SIGUSR2, False, Command.IGNORE),
        (signal.SIGWINCH, False, Command.IGNORE),
    ],
)
def test_signal_table(signum: int, draining: bool, command: Command) -> None:
    assert command_for(signum, draining) is command


OFF = WorkerLimits(worker_timeout=0)
READY = 100.0  # the worker became ready at t=100


def health(last_beat: float = READY, requests: int = 0, limit: int = 0, rss: float | None = None) -> Health:
    return Health(ready_at=READY, last_beat=last_beat, requests=requests, request_limit=limit, rss_mb=rss)


@pytest.mark.parametrize(
    ("limits", "seen", "now", "verdict"),
    [
        # Nothing set: never anything.
        (OFF, health(requests=10**9, rss=10**6), READY + 10**6, None),
        # max_requests: the worker's own limit (max_requests + its jitter), reached or passed.
        (WorkerLimits(max_requests=1000, worker_timeout=0), health(requests=999, limit=1000), 101, None),
        (
            WorkerLimits(max_requests=1000, worker_timeout=0),
            health(requests=1000, limit=1000),
            101,
            Recycle("after 1000 requests"),
        ),
        (
            WorkerLimits(max_requests=1000, worker_timeout=0),
            health(requests=1040, limit=1037),
            101,
            Recycle("after 1040 requests"),
        ),
        # max_lifetime: from readiness, not from spawn.
        (WorkerLimits(max_lifetime=3600, worker_timeout=0), health(), READY + 3599.9, None),
        (WorkerLimits(max_lifetime=3600, worker_timeout=0), health(), READY + 3600, Recycle("after 3600 s")),
        # max_rss_mb: the sampled value; no sample, no decision.
        (WorkerLimits(max_rss_mb=512, worker_timeout=0), health(rss=511.4), 101, None),
        (WorkerLimits(max_rss_mb=512, worker_timeout=0), health(rss=512.2), 101, Recycle("at 512 MB RSS")),
        (WorkerLimits(max_rss_mb=512, worker_timeout=0), health(rss=None), 101, None),
        # worker_timeout: silence since the last beat, or since readiness before the first.
        (WorkerLimits(worker_timeout=60), health(), READY + 59.9, None),
        (WorkerLimits(worker_timeout=60), health(), READY + 60, Hung(60)),
        (WorkerLimits(worker_timeout=60), health(last_beat=READY + 50), READY + 109.9, None),
        (WorkerLimits(worker_timeout=60), health(last_beat=READY + 50), READY + 111, Hung(61)),
        # A hung worker is replaced, not recycled: a roll would wait on a loop that drains nothing.
        (WorkerLimits(max_requests=10, worker_timeout=60), health(requests=50, limit=10), READY + 61, Hung(61)),
        # With several limits reached, requests are named first, then lifetime, then memory.
        (
            WorkerLimits(max_requests=10, max_lifetime=5, max_rss_mb=1, worker_timeout=0),
            health(requests=10, limit=10, rss=9),
            READY + 9,
            Recycle("after 10 requests"),
        ),
        (
            WorkerLimits(max_lifetime=5, max_rss_mb=1, worker_timeout=0),
            health(rss=9),
            READY + 9,
            Recycle("after 5 s"),
        ),
    ],
)
def test_judge(limits: WorkerLimits, seen: Health, now: float, verdict: Verdict) -> None:
    assert judge(limits, seen, now) == verdict


@pytest.mark.parametrize(
    ("limits", "seen", "now", "deadline"),
    [
        (OFF, health(), 101, math.inf),
        (WorkerLimits(max_requests=5, worker_timeout=0), health(), 101, math.inf),  # woken by the report itself
        (WorkerLimits(worker_timeout=60), health(), 101, READY + 60),
        (WorkerLimits(worker_timeout=60), health(last_beat=130), 131, 190),
        (WorkerLimits(max_lifetime=30, worker_timeout=60), health(), 101, READY + 30),
        (WorkerLimits(max_rss_mb=100, worker_timeout=60), health(), 101, 102),
        # A lifetime deadline already passed (its recycle waits for a retry) is no reason to wake.
        (WorkerLimits(max_lifetime=30, worker_timeout=60), health(last_beat=150), 151, 210),
    ],
)
def test_next_check(limits: WorkerLimits, seen: Health, now: float, deadline: float) -> None:
    assert next_check(limits, seen, now) == deadline


def test_request_limit_draws_each_workers_jitter() -> None:
    rng = random.Random(7)
    assert request_limit(WorkerLimits(), rng) == 0
    assert request_limit(WorkerLimits(max_requests_jitter=50), rng) == 0
    assert request_limit(WorkerLimits(max_requests=1000), rng) == 1000
    drawn = {request_limit(WorkerLimits(max_requests=1000, max_requests_jitter=50), rng) for _ in range(200)}
    assert min(drawn) >= 1000 and max(drawn) <= 1050 and len(drawn) > 10


@pytest.mark.parametrize(("timeout", "interval"), [(60, 1), (4, 1), (2, 0.5), (1, 0.25), (0, 1)])
def test_four_beats_per_worker_timeout_and_one_a_second(timeout: float, interval: float) -> None:
    assert beat_interval(WorkerLimits(worker_timeout=timeout)) == interval
