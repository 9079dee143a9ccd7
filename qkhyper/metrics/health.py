"""What `/healthz` and `/readyz` answer: pure functions of the supervisor's state, table-tested.

- `/healthz` is liveness of the service: 200 while every app has at least
  one ready worker, else 503. A load balancer takes the machine out of
  rotation when an app is down, whatever the supervisor itself is doing.
- `/readyz` is readiness of the supervisor: 200 once it printed its ready
  table, until it starts draining (SIGTERM, SIGINT): then 503, so a load
  balancer stops sending before the workers stop accepting.

Both bodies are small JSON objects; `/healthz` gives each app's ready and
total worker counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Answer = tuple[int, dict[str, Any]]


def healthz(apps: Mapping[str, tuple[int, int]]) -> Answer:
    """`apps`: each app's (ready workers, workers). No app at all is unhealthy."""
    healthy = bool(apps) and all(ready >= 1 for ready, _ in apps.values())
    body = {
        "status": "ok" if healthy else "unhealthy",
        "apps": {name: {"ready": ready, "workers": total} for name, (ready, total) in apps.items()},
    }
    return (200 if healthy else 503), body


def readyz(started: bool, draining: bool) -> Answer:
    if draining:
        return 503, {"status": "draining"}
    if not started:
        return 503, {"status": "starting"}
    return 200, {"status": "ready"}
