"""The worker limits of each app: its own value, else `[qkhyper]`'s, checked once at load.

Recycling is qkhyper's, not the server's: Hypercorn's `max_requests` ends a
worker, which the supervisor can only see as a crash (and back off), and uvicorn
has its own spelling; so those keys are refused (`MANAGED_HYPERCORN_KEYS`) and
these apply to every backend, and to `serve`, `gateway` and `static` alike.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from ..errors import ConfigError
from .model import AppSpec, QkhyperSettings, WorkerLimits

KEYS = tuple(field.name for field in dataclasses.fields(WorkerLimits))

# Heartbeats come every worker_timeout / 4; below a second, a long garbage
# collection or a busy machine would pass for a hung worker.
MIN_WORKER_TIMEOUT = 1.0

# Where each backend's own recycling setting should go instead.
MANAGED_KEYS = {
    "max_requests": "set `max_requests` in [qkhyper] or [[qkhyper.apps]] (qkhyper recycles workers by a roll)",
    "max_requests_jitter": "set `max_requests_jitter` in [qkhyper] or [[qkhyper.apps]]",
    "limit_max_requests": "uvicorn's setting: set `max_requests` in [qkhyper] or [[qkhyper.apps]]",
    "limit_max_requests_jitter": "uvicorn's setting: set `max_requests_jitter` in [qkhyper] or [[qkhyper.apps]]",
    "timeout_worker_healthcheck": "uvicorn's setting: set `worker_timeout` in [qkhyper] or [[qkhyper.apps]]",
}


def check_worker_limits(qk: QkhyperSettings) -> None:
    """Raise a one-line ConfigError naming the first bad key, in [qkhyper] or an app."""
    _check("qkhyper", qk)
    for i, app in enumerate(qk.apps):
        _check(f"qkhyper.apps[{i}]", app)


def _check(where: str, owner: QkhyperSettings | AppSpec) -> None:
    for key in KEYS:
        value = getattr(owner, key)
        if value is None:
            continue
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where}.{key} must be 0 (off) or positive, got {value}")
        if key == "worker_timeout" and 0 < value < MIN_WORKER_TIMEOUT:
            raise ConfigError(f"{where}.{key} must be 0 (off) or at least {MIN_WORKER_TIMEOUT:g} s, got {value}")


def worker_limits(qk: QkhyperSettings, app: AppSpec | None = None) -> WorkerLimits:
    """The limits for `app`'s workers (qkhyper's own servers: app=None, the [qkhyper] values)."""
    values = {key: getattr(qk, key) for key in KEYS}
    if app is not None:
        values.update({key: getattr(app, key) for key in KEYS if getattr(app, key) is not None})
    return WorkerLimits(**values)


def strictest(limits: Sequence[WorkerLimits]) -> WorkerLimits:
    """One worker serving several apps (`--aio`) keeps every app's limit: the smallest one set.

    A limit is off only when it is off for every app; the jitter goes with the
    `max_requests` it was chosen with.
    """
    values: dict[str, float] = {}
    for key in KEYS:
        if key == "max_requests_jitter":
            continue
        on = [getattr(each, key) for each in limits if getattr(each, key) > 0]
        values[key] = min(on) if on else 0
    chosen = [each for each in limits if each.max_requests == values["max_requests"]]
    jitter = chosen[0].max_requests_jitter if chosen else 0
    return WorkerLimits(
        max_requests=int(values["max_requests"]),
        max_requests_jitter=jitter,
        max_rss_mb=int(values["max_rss_mb"]),
        max_lifetime=float(values["max_lifetime"]),
        worker_timeout=float(values["worker_timeout"]),
    )


# gunicorn's and uvicorn's variable (Heroku, Render and Dokku set it from the machine's size).
WEB_CONCURRENCY = "WEB_CONCURRENCY"


def web_concurrency(env: Mapping[str, str]) -> int | None:
    """`$WEB_CONCURRENCY` as a worker count, None when unset or empty.

    It is a default, as in gunicorn (`workers`' default reads it): `--workers`
    beats an app's `workers` key, which beats this, which beats 1.

    Raises:
        ConfigError: not a whole number of at least 1.
    """
    text = env.get(WEB_CONCURRENCY, "").strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{WEB_CONCURRENCY} must be a whole number of workers, 1 or more, got {text!r}")
    return int(text)
