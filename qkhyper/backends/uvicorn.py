"""Serving with uvicorn (the optional extra) on a socket the supervisor bound.

uvicorn's `Server` installs SIGINT/SIGTERM handlers of its own; qkhyper
children must leave SIGINT to the supervisor, so `capture_signals` is replaced
and SIGTERM alone asks for the graceful shutdown. The HTTP protocol is
uvicorn's own, subclassed with qkhyper's edge limits (`Config(http=...)`, the
supported place): see uvicorn_httptools and uvicorn_h11.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Generator
from importlib.metadata import version
from typing import cast

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from ..asgi.types import ASGIApp
from ..config.model import EdgeLimits
from ..jsonlog import json_log_config
from ..tls import uvicorn_kwargs as tls_kwargs
from . import resolve_worker_class
from .base import ACCEPT_GRACE, ServerOptions
from .guards import require
from .serverkeys import uvicorn_kwargs

log = logging.getLogger("qkhyper.backend")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._stop)
        yield

    def _stop(self) -> None:
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Stop accepting first and give just-accepted connections ACCEPT_GRACE to
        # send their request before uvicorn closes the ones that have none yet.
        for server in self.servers:
            server.close()
        await asyncio.sleep(ACCEPT_GRACE)
        await super().shutdown(sockets)


def make_config(app: ASGIApp, options: ServerOptions) -> uvicorn.Config:
    """uvicorn's arguments for the file's Hypercorn keys (serverkeys.CARRIED), plus qkhyper's own."""
    server_keys = uvicorn_kwargs(options.hypercorn)
    if options.log_format == "json":  # the same loggers and handlers, every formatter JSON (jsonlog.py)
        server_keys["log_config"] = json_log_config(server_keys.get("log_config", LOGGING_CONFIG), options.label)
    return uvicorn.Config(
        app,
        lifespan="on",
        proxy_headers=False,  # qkhyper's own middleware handles them, for both backends
        loop="uvloop" if resolve_worker_class(options.worker_class) == "uvloop" else "asyncio",
        http=http_protocol(options.limits),
        h11_max_incomplete_event_size=options.limits.max_header_size,
        ws_per_message_deflate=options.ws_compression,
        **server_keys,
        **(tls_kwargs(options.tls) if options.tls is not None else {}),
    )


def http_protocol(limits: EdgeLimits) -> type[asyncio.Protocol] | str:
    """uvicorn's "auto" choice (httptools where it imports, else h11), with the edge limits.

    A uvicorn whose internals moved still serves, with its own protocol and a
    warning (tests/backends/test_internals.py names what moved).
    """
    try:
        return with_limits(_edge_protocol(), limits)
    except (ImportError, AttributeError, TypeError) as exc:
        log.warning("uvicorn %s internals changed (%s): serving without the edge limits", version("uvicorn"), exc)
        return "auto"


def with_limits(base: type[asyncio.Protocol], limits: EdgeLimits) -> type[asyncio.Protocol]:
    """`base` (an edge protocol class) bound to `limits`: uvicorn builds protocols from a class alone."""
    return cast("type[asyncio.Protocol]", type(base.__name__, (base,), {"limits": limits}))


def _edge_protocol() -> type[asyncio.Protocol]:
    """As uvicorn's "auto": httptools where it imports, else h11 (uvicorn/protocols/http/auto.py)."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        from . import uvicorn_h11
        from .heads import require_h11

        require(uvicorn_h11.EdgeH11Protocol.__bases__[0], uvicorn_h11.OVERRIDES)
        require_h11()
        return uvicorn_h11.EdgeH11Protocol
    from . import uvicorn_httptools

    require(uvicorn_httptools.EdgeHttpToolsProtocol.__bases__[0], uvicorn_httptools.OVERRIDES)
    return uvicorn_httptools.EdgeHttpToolsProtocol


def serve(app: ASGIApp, sock: socket.socket, options: ServerOptions) -> bool:
    config = make_config(app, options)
    server = _Server(config)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(server.serve(sockets=[sock]))
    return server.started
