"""Server backends, imported lazily by name."""

from __future__ import annotations

import importlib
import logging
from typing import cast

from .base import Backend, ServerOptions

BACKENDS = {
    "hypercorn": "qkhyper.backends.hypercorn",
    "uvicorn": "qkhyper.backends.uvicorn",
}

log = logging.getLogger("qkhyper.backend")


def get_backend(name: str) -> Backend:
    module = importlib.import_module(BACKENDS[name])
    return cast(Backend, module.serve)


def resolve_worker_class(worker_class: str) -> str:
    """uvloop where it is installed; asyncio, with a log line, where it is not."""
    if worker_class != "uvloop":
        return worker_class
    try:
        import uvloop  # noqa: F401
    except ImportError:
        log.warning("uvloop is not installed; using the asyncio worker class")
        return "asyncio"
    return "uvloop"


__all__ = ["BACKENDS", "Backend", "ServerOptions", "get_backend", "resolve_worker_class"]
