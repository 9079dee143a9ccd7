"""Serving with Hypercorn on a socket the supervisor bound (`fd://`)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from hypercorn.config import Config
from hypercorn.typing import TaskGroup
from hypercorn.utils import LifespanFailureError

from ..asgi.types import ASGIApp
from ..config.hypercorn_values import log_level
from ..config.model import EdgeLimits
from ..jsonlog import json_logger
from ..tls import hypercorn_keys
from . import resolve_worker_class
from .base import ACCEPT_GRACE, ServerOptions
from .serverkeys import hypercorn_mapping

if TYPE_CHECKING:
    from trio import CancelScope

    from .hypercorn_h11 import EdgeH11Protocol

log = logging.getLogger("qkhyper.backend")


def make_config(sock: socket.socket, options: ServerOptions) -> Config:
    config = Config.from_mapping(hypercorn_mapping(options.hypercorn))
    config.bind = [f"fd://{sock.fileno()}"]
    # h11's limit on an incomplete head (it answers 431); EdgeH11Protocol also
    # measures complete heads, and this one still holds should that patch not apply.
    config.h11_max_incomplete_size = options.limits.max_header_size
    # HTTP/2 (ALPN over TLS, or h2c) counts 32 bytes more per header (RFC 7540 §6.5.2) and closes the whole
    # connection past its limit: leave the decision, and its 431, to the edge check, as on HTTP/1.1.
    config.h2_max_header_list_size = options.limits.max_header_size + 32 * options.limits.max_headers
    if options.tls is not None:  # Hypercorn then serves the fd:// bind with TLS, HTTP/2 offered by ALPN
        for key, value in hypercorn_keys(options.tls).items():
            setattr(config, key, value)
    if options.log_format == "json":
        _json_logs(config, options)
    return config


def _json_logs(config: Config, options: ServerOptions) -> None:
    """Hypercorn's error and access logs as JSON objects, where they go to the worker's output.

    Hypercorn uses a `logging.Logger` given as `errorlog`/`accesslog` as it is;
    a file path the user set is left alone. The access line stays Hypercorn's
    own text, as `msg`.
    """
    level = log_level(options.hypercorn)
    for attr, name, stream in (
        ("errorlog", "hypercorn.error", sys.stderr),
        ("accesslog", "hypercorn.access", sys.stdout),
    ):
        if getattr(config, attr) == "-":
            setattr(config, attr, json_logger(name, stream, options.label, level))


def serve(app: ASGIApp, sock: socket.socket, options: ServerOptions) -> bool:
    config = make_config(sock, options)
    worker_class = resolve_worker_class(options.worker_class)
    _patch_safely(lambda: _edge_protocol(options.limits, worker_class), "header timeout and h2c switch")
    _patch_safely(_h2_header_limit, "HTTP/2 header limit")
    if not options.ws_compression:
        _patch_safely(_no_ws_compression, "WebSocket compression switch")
    try:
        if worker_class == "trio":
            _serve_trio(app, config)
        else:
            _serve_asyncio(app, config, _loop_factory(worker_class))
    except LifespanFailureError:
        return False
    except BaseExceptionGroup as group:  # hypercorn's task groups wrap it
        failed, rest = group.split(LifespanFailureError)
        if failed is None or rest is not None:
            raise
        return False
    return True


def _loop_factory(worker_class: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if worker_class == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def _patch_safely(patch: Callable[[], None], what: str) -> None:
    """Apply a patch of Hypercorn's internals; a Hypercorn whose internals moved still serves, without it.

    tests/backends/test_internals.py fails, naming the version, when one no longer applies.
    """
    try:
        patch()
    except (ImportError, AttributeError, TypeError) as exc:
        log.warning("hypercorn %s internals changed (%s): serving without the %s", _version(), exc, what)


def _version() -> str:
    from importlib.metadata import version

    return version("hypercorn")


def _edge_protocol(limits: EdgeLimits, worker_class: str) -> None:
    """The header timeout, exact head size and h2c switch (see hypercorn_h11)."""
    from .hypercorn_h11 import install

    install(limits, TrioAlarm if worker_class == "trio" else AsyncioAlarm)


def _h2_header_limit() -> None:
    """`max_header_size` over HTTP/2 too (see hypercorn_h2)."""
    from .hypercorn_h2 import install

    install()


def _no_ws_compression() -> None:
    """No permessage-deflate offered to WebSocket clients (see hypercorn_ws)."""
    from .hypercorn_ws import install

    install()


class AsyncioAlarm:
    """A connection's header deadline on asyncio: a timer handle; a task only once it rings."""

    def __init__(self, task_group: TaskGroup) -> None:
        self.task_group = task_group
        self.loop = asyncio.get_running_loop()
        self.handle: asyncio.TimerHandle | None = None

    def set(self, timeout: float, ring: Callable[[], Awaitable[None]]) -> None:
        self.cancel()
        self.handle = self.loop.call_later(timeout, self.task_group.spawn, ring)

    def now(self) -> float:
        return self.loop.time()

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class TrioAlarm:
    """The same under trio, which has no timer callbacks: a task in the connection's nursery."""

    def __init__(self, task_group: TaskGroup) -> None:
        self.task_group = task_group
        self.scope: CancelScope | None = None

    def set(self, timeout: float, ring: Callable[[], Awaitable[None]]) -> None:
        import trio

        self.cancel()
        scope = self.scope = trio.CancelScope()

        async def sleep_then_ring() -> None:
            with scope:
                await trio.sleep(timeout)
            if not scope.cancel_called:
                await ring()

        self.task_group.spawn(sleep_then_ring)

    def cancel(self) -> None:
        if self.scope is not None:
            self.scope.cancel()
            self.scope = None

    def now(self) -> float:
        import trio

        return trio.current_time()


def _graceful_asyncio_context() -> None:
    """Delay Hypercorn's idle-connection sweep until after it stopped accepting (see ACCEPT_GRACE).

    Hypercorn's asyncio worker sets `context.terminated` (which closes idle
    connections) *before* it closes its listening servers; this context sets the
    event `ACCEPT_GRACE` seconds later instead, without delaying the close.
    The patch is made in the worker process, which serves only this app.
    """
    import hypercorn.asyncio.run as hypercorn_run
    from hypercorn.asyncio.worker_context import EventWrapper, WorkerContext

    class DelayedEvent(EventWrapper):
        def __init__(self) -> None:
            super().__init__()
            # Connections between requests whose keep-alive clock is an alarm (hypercorn_h11.IdleRegistry):
            # Hypercorn's idle tasks end when the event is set; these are told.
            self.idle: set[EdgeH11Protocol] = set()

        async def set(self) -> None:
            asyncio.get_running_loop().call_later(ACCEPT_GRACE, self._set_now)

        def _set_now(self) -> None:
            self._event.set()
            for connection in list(self.idle):
                connection.worker_stopping()

    class GracefulContext(WorkerContext):
        def __init__(self, max_requests: int | None) -> None:
            super().__init__(max_requests)
            self.terminated = DelayedEvent()

    hypercorn_run.WorkerContext = GracefulContext  # type: ignore[attr-defined]


def _serve_asyncio(app: ASGIApp, config: Config, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve

    _patch_safely(_graceful_asyncio_context, "accept grace")

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await hypercorn_serve(app, config, shutdown_trigger=stop.wait, mode="asgi")  # type: ignore[arg-type]

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())


def _graceful_trio_context() -> None:
    """As `_graceful_asyncio_context`; under trio the listeners already stopped, so the set may wait."""
    import hypercorn.trio.run as hypercorn_run
    import trio
    from hypercorn.trio.worker_context import EventWrapper, WorkerContext

    class DelayedEvent(EventWrapper):
        async def set(self) -> None:
            await trio.sleep(ACCEPT_GRACE)
            await super().set()

    class GracefulContext(WorkerContext):
        def __init__(self, max_requests: int | None) -> None:
            super().__init__(max_requests)
            self.terminated = DelayedEvent()

    hypercorn_run.WorkerContext = GracefulContext  # type: ignore[attr-defined]


def _serve_trio(app: ASGIApp, config: Config) -> None:
    import trio
    from hypercorn.trio import serve as hypercorn_serve

    _patch_safely(_graceful_trio_context, "accept grace")

    async def main() -> None:
        # Receive SIGTERM from the start, and for the worker's whole life: a SIGTERM
        # during the lifespan startup must still get the graceful stop (startup
        # finishes, then shutdown runs), and one arriving after the first must not
        # fall back to the default action and kill the worker mid-drain.
        with trio.open_signal_receiver(signal.SIGTERM) as signals:

            async def sigterm() -> None:
                async for _ in signals:
                    return

            await hypercorn_serve(app, config, shutdown_trigger=sigterm, mode="asgi")  # type: ignore[arg-type]

    trio.run(main)
