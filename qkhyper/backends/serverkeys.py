"""The top level of hypercorn.toml, read the same way by both backends.

The file speaks Hypercorn's vocabulary. Under `backend = "uvicorn"` every key
in `CARRIED` becomes the uvicorn argument that does what Hypercorn does with
it, and an absent key gets Hypercorn's default, so a setting has one meaning
whichever server runs (tests/backends/test_serverkeys.py holds each row against
Hypercorn's own reading). Keys uvicorn has no twin for are named in a warning
at start (`ignored_by_uvicorn`). TLS is not a top-level key: each server has
its own certfile/keyfile (qkhyper/tls.py), and only `ciphers` is carried here.

Two keys qkhyper settles itself for both servers:

- `backlog`: the supervisor listens with it, and both servers listen again on
  the inherited socket with their own value (Hypercorn 100, uvicorn 2048), so
  each is told the same number: the key, else 2048.
- `root_path`: uvicorn prepends it to `path`, Hypercorn does not. Neither
  server gets it; the worker applies it (asgi/proxy_headers.py, the uvicorn and
  ASGI convention) in front of the app on both.

No uvicorn import at module level: the parent reads `CARRIED` to warn.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from ..config.hypercorn_values import LOG_LEVELS
from ..tls import DEFAULT_CIPHERS

DEFAULT_BACKLOG = 2048
MIB = 1024 * 1024
# Settled by qkhyper for both servers, so not handed to either as such.
QKHYPER_APPLIED = frozenset({"root_path"})


def backlog(hypercorn: Mapping[str, Any]) -> int:
    return int(hypercorn.get("backlog", DEFAULT_BACKLOG))


def _access_log(target: Any) -> dict[str, Any]:
    """Hypercorn: None or "" is off, "-" is stdout, anything else a file."""
    if not target:
        return {"access_log": False}
    if target == "-":
        return {"access_log": True}
    from uvicorn.config import LOGGING_CONFIG

    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["handlers"]["access"] = {"formatter": "access", "class": "logging.FileHandler", "filename": target}
    log_config["formatters"]["access"]["use_colors"] = False
    return {"access_log": True, "log_config": log_config}


# Hypercorn key -> uvicorn `Config` arguments. Every key is also applied when
# absent, with Hypercorn's default (`HYPERCORN_DEFAULTS`).
CARRIED: dict[str, Callable[[Any], dict[str, Any]]] = {
    "graceful_timeout": lambda v: {"timeout_graceful_shutdown": float(v)},
    # A float: int() turned 2.5 into 2 and 0.5 into 0 (close at once).
    "keep_alive_timeout": lambda v: {"timeout_keep_alive": float(v)},
    "accesslog": _access_log,
    # uvicorn's own names lack "warn"; a number means the same to both.
    "loglevel": lambda v: {"log_level": LOG_LEVELS[str(v).lower()]},
    "include_server_header": lambda v: {"server_header": bool(v)},
    "include_date_header": lambda v: {"date_header": bool(v)},
    "backlog": lambda v: {"backlog": int(v)},
    "websocket_max_message_size": lambda v: {"ws_max_size": int(v)},
    # Messages a server holds for an app that is not receiving them: with the size
    # above, what one WebSocket may cost in memory (uvicorn's own default is 32).
    "max_app_queue_size": lambda v: {"ws_max_queue": int(v)},
    # Hypercorn's default, not uvicorn's broader "TLSv1", when a server has TLS.
    "ciphers": lambda v: {"ssl_ciphers": str(v)},
}
HYPERCORN_DEFAULTS: dict[str, Any] = {
    "graceful_timeout": 3.0,
    "keep_alive_timeout": 5.0,
    "accesslog": None,
    "loglevel": "info",
    "include_server_header": True,
    "include_date_header": True,
    "backlog": DEFAULT_BACKLOG,
    "websocket_max_message_size": 16 * MIB,
    "max_app_queue_size": 10,
    "ciphers": DEFAULT_CIPHERS,
}


def uvicorn_kwargs(hypercorn: Mapping[str, Any]) -> dict[str, Any]:
    """The uvicorn `Config` arguments for the file's top-level keys, defaults included."""
    kwargs: dict[str, Any] = {}
    for key, convert in CARRIED.items():
        kwargs.update(convert(hypercorn.get(key, HYPERCORN_DEFAULTS[key])))
    return kwargs


def hypercorn_mapping(hypercorn: Mapping[str, Any]) -> dict[str, Any]:
    """The keys as Hypercorn's `Config.from_mapping` gets them: the backlog settled, root_path left to qkhyper."""
    mapping = {key: value for key, value in hypercorn.items() if key not in QKHYPER_APPLIED}
    mapping["backlog"] = backlog(hypercorn)
    return mapping


def ignored_by_uvicorn(hypercorn: Mapping[str, Any]) -> list[str]:
    """Keys set in the file that uvicorn has no twin for (the TLS files are never top-level keys)."""
    return sorted(set(hypercorn) - set(CARRIED) - QKHYPER_APPLIED)
