"""`/healthz` and `/readyz` decisions, as tables."""

from __future__ import annotations

import pytest

from qkhyper.metrics.health import healthz, readyz
from qkhyper.supervisor.status import worker_state


@pytest.mark.parametrize(
    ("apps", "status"),
    [
        ({"users": (1, 1)}, 200),
        ({"users": (1, 2), "orders": (2, 2)}, 200),
        ({"users": (0, 1)}, 503),  # its only worker crashed, restart pending
        ({"users": (2, 2), "orders": (0, 1)}, 503),  # one app down is enough
        ({}, 503),  # nothing started yet
    ],
)
def test_healthz(apps: dict[str, tuple[int, int]], status: int) -> None:
    code, body = healthz(apps)
    assert code == status
    assert body["status"] == ("ok" if status == 200 else "unhealthy")
    assert body["apps"] == {name: {"ready": r, "workers": t} for name, (r, t) in apps.items()}


@pytest.mark.parametrize(
    ("started", "draining", "status", "word"),
    [
        (False, False, 503, "starting"),
        (True, False, 200, "ready"),
        (True, True, 503, "draining"),
        (False, True, 503, "draining"),  # a start that failed and is stopping
    ],
)
def test_readyz(started: bool, draining: bool, status: int, word: str) -> None:
    assert readyz(started, draining) == (status, {"status": word})


@pytest.mark.parametrize(
    ("current", "is_ready", "draining", "state"),
    [
        (False, False, False, "starting"),  # a roll's replacement, or a restart, not ready yet
        (True, True, False, "ready"),
        (False, True, False, "draining"),  # replaced by a roll, finishing its requests
        (True, True, True, "draining"),  # SIGTERM
        (False, False, True, "draining"),
    ],
)
def test_worker_state(current: bool, is_ready: bool, draining: bool, state: str) -> None:
    assert worker_state(current, is_ready, draining) == state
