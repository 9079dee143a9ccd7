"""What `qkhyper status` shows of a slot's workers, read from the slot without changing it.

Worker states, in the order a worker goes through them:

- `starting`: spawned, its apps' lifespan startup not finished (a new slot,
  or the replacement a roll starts before the old worker drains);
- `ready`: the worker the slot serves with;
- `draining`: replaced by a roll or removed by `scale`/SIGTTOU, finishing its
  requests within `graceful_timeout`;
- `restarting`: no worker at all, the slot waits out its crash back-off
  (shown with pid null, so an operator sees the gap rather than nothing).
"""

from __future__ import annotations

import math
from typing import Any

from .slot import Slot
from .worker import Worker


def slot_rows(slot: Slot, number: int, now: float, *, draining: bool = False) -> list[dict[str, Any]]:
    """One row per live worker of `slot` (numbered `number` within its app), current worker first.

    `draining`: the slot is being removed, or the whole supervisor is stopping.
    """
    live = sorted(slot.live, key=lambda w: (w is not slot.worker, w.started_at))
    if not live:
        return [_row(slot, number, None, "restarting", now)] if not slot.finished.is_set() else []
    return [_row(slot, number, w, worker_state(w is slot.worker, w.heartbeat.is_ready, draining), now) for w in live]


def worker_state(current: bool, is_ready: bool, draining: bool) -> str:
    """starting: not ready yet; ready: the one its slot serves with; draining: being stopped or replaced.

    The one rule for `qkhyper status` and the `qkhyper_workers{state}` metric.
    """
    if draining or (is_ready and not current):
        return "draining"
    return "ready" if current else "starting"


def _row(slot: Slot, number: int, worker: Worker | None, state: str, now: float) -> dict[str, Any]:
    rss = worker.rss_mb() if worker is not None else None
    return {
        "slot": number,
        "pid": worker.pid if worker is not None else None,
        "state": state,
        "uptime_s": round(now - worker.started_at, 1) if worker is not None else None,
        "requests": worker.heartbeat.requests if worker is not None else None,
        "rss_mb": None if rss is None or not math.isfinite(rss) else round(rss, 1),
        "restarts": sum(slot.restarts.values()),
        "restarts_by_reason": dict(slot.restarts),
        "last_exit": slot.last_exit or None,
    }
