"""Running the lifespan protocol of one app on qkhyper's behalf.

The server talks lifespan to qkhyper's host app only; the host drives each
user app through an `AppLifespan`. That lets `--aio` run every app's startup
in order and shutdown in reverse, give each app its own `state`, and fail the
whole start when one app fails, none of which a server-level dispatcher does
(Starlette's `Mount` runs no sub-app lifespan, Hypercorn's dispatcher ignores
`startup.failed`).

An app "does not support lifespan" when it raises or returns *before* asking
for the startup event, as the ASGI spec allows; one that raises after
receiving it has failed its startup.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..errors import AppStartupError
from .types import ASGIApp, Message

log = logging.getLogger("qkhyper.lifespan")


class AppLifespan:
    """The lifespan of one app: `startup()` then, later, `shutdown()`."""

    def __init__(self, name: str, app: ASGIApp, timeout: float = 60.0) -> None:
        self.name = name
        self.app = app
        self.timeout = timeout
        self.state: dict[str, Any] = {}
        self.supported = True
        self._to_app, self._app_inbox = anyio.create_memory_object_stream[Message](2)
        self._reply = anyio.Event()
        self._reply_message: Message | None = None
        self._asked_startup = False
        self._error: str | None = None
        self._done = anyio.Event()

    async def startup(self, task_group: TaskGroup) -> None:
        """Start the app's lifespan task in `task_group` and wait for its startup.

        Raises:
            AppStartupError: if the app reports `startup.failed`, raises during
                startup or does not answer within the timeout.
        """
        task_group.start_soon(self._run)
        await self._to_app.send({"type": "lifespan.startup"})
        reply = await self._wait_reply("startup")
        if reply is None:
            return
        if reply["type"] == "lifespan.startup.failed":
            reason = one_line(str(reply.get("message") or "no reason given"))
            raise AppStartupError(self.name, f"lifespan startup failed: {reason}")

    async def shutdown(self) -> None:
        """Ask the app to shut down and wait for it; failures are logged, not raised."""
        if not self.supported or self._done.is_set():
            return
        self._reply, self._reply_message = anyio.Event(), None
        await self._to_app.send({"type": "lifespan.shutdown"})
        try:
            reply = await self._wait_reply("shutdown")
        except AppStartupError as exc:  # raised or timed out while shutting down
            log.error("%s", exc)
            return
        if reply is not None and reply["type"] == "lifespan.shutdown.failed":
            log.error("app %r: lifespan shutdown failed: %s", self.name, one_line(str(reply.get("message", ""))))

    async def _wait_reply(self, stage: str) -> Message | None:
        """Wait for the app's answer; None means the app has no lifespan support."""
        with anyio.move_on_after(self.timeout if self.timeout > 0 else math.inf) as scope:
            async with anyio.create_task_group() as waiters:

                async def first(event: anyio.Event) -> None:
                    await event.wait()
                    waiters.cancel_scope.cancel()

                waiters.start_soon(first, self._reply)
                waiters.start_soon(first, self._done)
        if scope.cancelled_caught:
            raise AppStartupError(self.name, f"lifespan {stage} did not finish within {self.timeout:g} s")
        if self._reply_message is not None and self._reply.is_set():
            return self._reply_message
        if stage == "startup" and not self._asked_startup:
            self.supported = False
            return None
        if self._error is not None:
            raise AppStartupError(self.name, f"lifespan {stage} raised {self._error}")
        raise AppStartupError(self.name, f"lifespan {stage}: the app returned without answering")

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except Exception as exc:  # the app's own failure: reported by startup()/shutdown()
            self._error = f"{type(exc).__name__}: {exc}"
            if self._asked_startup:
                log.debug("app %r lifespan raised", self.name, exc_info=True)
        finally:
            self._done.set()

    async def _receive(self) -> Message:
        message = await self._app_inbox.receive()
        if message["type"] == "lifespan.startup":
            self._asked_startup = True
        return message

    async def _send(self, message: Message) -> None:
        self._reply_message = message
        self._reply.set()


def one_line(message: str) -> str:
    """The last line of a failure message: Starlette sends a whole traceback.

    The full text is logged at debug level (`--debug`); users get the line that
    names the exception.
    """
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if len(lines) > 1:
        log.debug("%s", message)
    return lines[-1] if lines else "no reason given"
