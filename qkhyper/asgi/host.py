"""The ASGI app every qkhyper child hands to its server.

It owns the lifespans of the user apps (see `lifespan.py`), tells the
supervisor when all of them have started, and routes requests: to the one
app, or by prefix in `--aio` mode.

It is also where the worker proves to its supervisor that it is alive: a task
in the lifespan's task group, which runs on the server's event loop, reports
every `beat_interval` seconds, so a loop blocked by a sync call in a route
stops the beats (a thread would beat on regardless). Each beat carries the
request count, which costs a request one increment and one comparison: the
count is reported at once only on reaching `request_limit`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio

from ..errors import AppStartupError
from .lifespan import AppLifespan
from .mounts import index_body, match_mount, mounted_scope, route_path
from .responses import send_json
from .types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("qkhyper.host")


@dataclass(frozen=True)
class Mount:
    name: str
    prefix: str  # "" mounts the app at the root (one app per server)
    app: ASGIApp
    lifespan: AppLifespan


def make_mounts(apps: Sequence[tuple[str, str, ASGIApp]], timeout: float) -> list[Mount]:
    """Mounts for `(name, prefix, app)` triples, each with its own lifespan."""
    return [Mount(name, prefix, app, AppLifespan(name, app, timeout)) for name, prefix, app in apps]


class HostApp:
    def __init__(
        self,
        mounts: Sequence[Mount],
        *,
        on_ready: Callable[[], None] = lambda: None,
        on_failed: Callable[[str], None] = lambda message: None,
        on_beat: Callable[[int], None] = lambda requests: None,
        beat_interval: float = 0.0,
        request_limit: int = 0,
    ) -> None:
        """
        Args:
            on_beat: called with the request count every `beat_interval`
                seconds (0: never) once started, and on reaching `request_limit`
                requests (0: never).
        """
        self.mounts = list(mounts)
        self.on_ready = on_ready
        self.on_failed = on_failed
        self.on_beat = on_beat
        self.beat_interval = beat_interval
        self.request_limit = request_limit
        self.requests = 0  # HTTP requests and WebSocket connections served so far
        self._root = self.mounts[0] if len(self.mounts) == 1 and not self.mounts[0].prefix else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        self.requests += 1
        if self.requests == self.request_limit:
            self.on_beat(self.requests)
        if self._root is not None:
            await self._root.app({**scope, "state": dict(self._root.lifespan.state)}, receive, send)
            return
        await self._dispatch(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope)
        mount = match_mount(self.mounts, path)
        if mount is not None:
            await mount.app(mounted_scope(scope, mount.prefix, mount.lifespan.state), receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        elif path == "/" and scope["method"] in ("GET", "HEAD"):
            await send_json(send, 200, index_body(self.mounts))
        else:
            prefixes = ["/" + m.prefix for m in self.mounts]
            await send_json(send, 404, {"error": "not found", "path": path, "prefixes": prefixes})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        started: list[Mount] = []
        async with anyio.create_task_group() as task_group:
            try:
                for mount in self.mounts:
                    await mount.lifespan.startup(task_group)
                    started.append(mount)
            except AppStartupError as exc:
                # Shut the started apps down before telling the supervisor, which stops
                # this worker as soon as it hears of the failure.
                await self._shutdown(started)
                self.on_failed(str(exc))
                task_group.cancel_scope.cancel()
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            self.on_ready()
            if self.beat_interval > 0:
                task_group.start_soon(self._beat)
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await self._shutdown(started)
            task_group.cancel_scope.cancel()
        await send({"type": "lifespan.shutdown.complete"})

    async def _beat(self) -> None:
        while True:
            await anyio.sleep(self.beat_interval)
            self.on_beat(self.requests)

    async def _shutdown(self, started: list[Mount]) -> None:
        for mount in reversed(started):
            await mount.lifespan.shutdown()
