"""Keep-alive connections per upstream target, and the order targets are tried in.

LIFO reuse keeps the hottest connections busy and lets the rest age out; an
idle connection older than `idle_timeout` is never reused. The default (4 s)
sits below the 5 s after which Hypercorn and uvicorn close idle connections,
so the proxy drops a connection before the upstream can (RELIABILITY §2).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .connection import Target, UpstreamConnection

# A connection idle for longer than this is checked for a close from the upstream
# before reuse (a zero-timeout poll); fresher ones cannot have hit a keep-alive limit.
RECHECK_AFTER = 1.0
# How long a target that refused a connection is skipped (SPEC §4, passive health).
DOWN_FOR = 10.0


class Pool:
    def __init__(self, *, max_idle: int = 64, idle_timeout: float = 4.0, connect_timeout: float = 5.0) -> None:
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self._idle: dict[Target, list[UpstreamConnection]] = {}

    async def acquire(self, target: Target) -> tuple[UpstreamConnection, bool]:
        """A connection to `target` and whether it was reused from the pool.

        Raises:
            UpstreamError: a new connection could not be opened.
        """
        idle = self._idle.get(target)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            age = now - conn.idle_since
            if age >= self.idle_timeout:
                # LIFO: everything below this one is older still.
                stale = [conn, *idle]
                idle.clear()
                for old in stale:
                    await old.aclose()
                break
            if age > RECHECK_AFTER and conn.peer_closed():
                await conn.aclose()
                continue
            return conn, True
        return await UpstreamConnection.open(target, self.connect_timeout), False

    async def release(self, conn: UpstreamConnection) -> None:
        """Return a finished connection, or close it if it cannot be reused."""
        idle = self._idle.setdefault(conn.target, [])
        if len(idle) < self.max_idle and conn.recycle():
            idle.append(conn)
        else:
            await conn.aclose()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                await conn.aclose()
        self._idle.clear()


class Upstreams:
    """The targets of one route: round-robin, skipping those that refused recently."""

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = list(targets)
        self._next = 0
        self._down_until: dict[Target, float] = {}

    def order(self, now: float) -> list[Target]:
        """Targets to try for one request, healthy ones first."""
        if len(self.targets) == 1:
            return self.targets
        start = self._next
        self._next = (start + 1) % len(self.targets)
        rotated = self.targets[start:] + self.targets[:start]
        healthy = [t for t in rotated if self._down_until.get(t, 0.0) <= now]
        return healthy + [t for t in rotated if t not in healthy]

    def mark_down(self, target: Target, now: float) -> None:
        if len(self.targets) > 1:
            self._down_until[target] = now + DOWN_FOR
