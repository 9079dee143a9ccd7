"""Values of top-level (Hypercorn) keys that would fail in a worker or mean two things.

`check_hypercorn_keys` (load.py) knows every key and its type; this checks the
values whose mistakes only showed later: a `loglevel` Hypercorn cannot set was
a traceback in every worker, a `root_path` without its leading slash builds
wrong URLs, and TLS keys under uvicorn would be ignored and serve plain HTTP.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

# Hypercorn's `loglevel` names (it upper-cases them), as numbers both servers accept.
LOG_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
_ROOT_PATH = re.compile(r"^(/[A-Za-z0-9_~!$&'()*+,;=:@.-]+)+$")


def log_level(hypercorn: Mapping[str, Any], debug: bool = False) -> int:
    """The level of every logger qkhyper configures: `loglevel` (Hypercorn's default, info); `--debug` is debug.

    The servers read the same key for their error logs, so supervisor, workers
    and servers are quieted by one setting, as `--log-level` is for gunicorn.
    """
    if debug:
        return logging.DEBUG
    return LOG_LEVELS[str(hypercorn.get("loglevel", "info")).lower()]


def check_hypercorn_values(hypercorn: Mapping[str, Any]) -> None:
    """Raises ConfigError naming the key, for the mistakes above."""
    level = hypercorn.get("loglevel")
    if level is not None and str(level).lower() not in LOG_LEVELS:
        raise ConfigError(f"loglevel must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    root_path = hypercorn.get("root_path")
    if root_path and (not _ROOT_PATH.match(root_path) or {".", ".."} & set(root_path.split("/"))):
        raise ConfigError(f"root_path {root_path!r} must look like /api or /api/v1 (no trailing slash)")
