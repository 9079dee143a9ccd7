"""Reaping orphans when the supervisor is PID 1 (a container without an init).

Processes an app starts and abandons are re-parented to PID 1; an init reaps
them, and so must a supervisor standing in for one, or they pile up as
zombies. `waitid(..., WNOWAIT)` only peeks, so the exit status of qkhyper's own
workers is left for trio, which waits for them itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import trio

log = logging.getLogger("qkhyper.supervisor")

INTERVAL = 1.0


def reap_orphans(own: Callable[[], set[int]]) -> int:
    """Reap every exited child that is not one of `own()`; return how many."""
    reaped = 0
    while True:
        try:
            found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return reaped
        if found is None or found.si_pid in own():
            return reaped  # nothing exited, or a worker trio will collect: look again later
        os.waitpid(found.si_pid, os.WNOHANG)
        reaped += 1


async def reap_forever(own: Callable[[], set[int]]) -> None:
    log.info("running as PID 1: reaping orphaned processes")
    while True:
        await trio.sleep(INTERVAL)
        reap_orphans(own)
