"""Forwarding one HTTP request: pick a target, send the head and body, relay the response.

Retries, redirects the gateway follows itself, Location rewriting and the JSON
502/504 answers live here; moving the bodies is `bodies.py`'s job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11

from ..asgi.responses import send_json
from ..asgi.types import Receive, Scope, Send
from .bodies import MidBody, RequestBody, drain, stream_body, stream_watched
from .connection import Target, UpstreamConnection, UpstreamError
from .pool import Pool, Upstreams
from .protocol import (
    BadRequest,
    RequestHead,
    public_origin,
    request_head,
    request_host,
    response_headers,
    rewrite_location,
    upstream_target,
)
from .watchdog import Watchdog

log = logging.getLogger("qkhyper.proxy")
access_log = logging.getLogger("qkhyper.access")

# Bodies up to this size with a Content-Length are sent without a disconnect watcher.
SMALL_BODY = 1024 * 1024
# Largest docs page or openapi.json the body hook may buffer and edit.
REWRITE_LIMIT = 4 * 1024 * 1024
_NO_BODY_STATUS = frozenset({204, 304})

BodyHook = Callable[[bytes, bytes], bytes]  # (route-relative path, body) -> new body


@dataclass(frozen=True)
class Route:
    """Where a prefix goes. `strip` is False for upstreams that expect the full path."""

    prefix: str  # "/users"; "" for the fallback route
    upstreams: Upstreams
    strip: bool = True


@dataclass(frozen=True)
class ProxyOptions:
    read_timeout: float = 60.0  # until the response head arrives
    max_body_size: int = 0  # 0: unlimited
    access_log: bool = False


class UpstreamResponse:
    """What came back, for the body stage and the access log."""

    def __init__(self, conn: UpstreamConnection, event: h11.Response, target: Target) -> None:
        self.conn = conn
        self.event = event
        self.target = target


class Forwarder:
    def __init__(self, pool: Pool, watchdog: Watchdog, options: ProxyOptions) -> None:
        self.pool = pool
        self.watchdog = watchdog
        self.options = options
        self.redirects: dict[tuple[str, bytes], bytes] = {}  # --fastapi-redirect memory
        self.body_hook: Callable[[Route, bytes], BodyHook | None] | None = None
        self.redirect_hook: Callable[[Route, bytes, UpstreamResponse], bytes | None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send, route: Route) -> None:
        started = time.monotonic()
        status = 0
        target: Target | None = None
        try:
            status, target = await self._forward(scope, receive, send, route)
        except BadRequest as exc:
            status = 400
            await send_json(send, 400, {"error": "bad request", "detail": str(exc)})
        except UpstreamError as exc:
            status = exc.status
            if exc.kind == "client_left":
                status = 499  # nginx's code for it, in the access log only: nobody is listening
                return
            log.warning("%s %s -> %s: %s", scope["method"], scope["path"], route.prefix or "fallback", exc)
            await send_error(send, exc, route)
        finally:
            if self.options.access_log:
                elapsed = (time.monotonic() - started) * 1000
                where = f"{target[0]}:{target[1]}" if target else "-"
                access_log.info(
                    '%s "%s %s" %d -> %s %s %.1fms',
                    (scope.get("client") or ("-",))[0],
                    scope["method"],
                    scope["path"],
                    status,
                    route.prefix or "fallback",
                    where,
                    elapsed,
                )

    async def _forward(self, scope: Scope, receive: Receive, send: Send, route: Route) -> tuple[int, Target]:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        path = raw_path[len(route.prefix) :] if route.strip else raw_path
        if self.redirect_hook is not None:
            path = self.redirects.get((route.prefix, path), path)
        target = upstream_target(path, scope.get("query_string", b""), 0)
        host = request_host(scope)
        head = request_head(scope, target, route.prefix if route.strip else "", host)
        if self.options.max_body_size and (head.length or 0) > self.options.max_body_size:
            await send_json(send, 413, {"error": "request body too large", "limit": self.options.max_body_size})
            return 413, route.upstreams.targets[0]
        body = RequestBody(receive, head, self.options.max_body_size)
        response = await self._exchange(route, head, body, receive)
        response = await self._follow_redirect(route, head, body, receive, response, path)
        await self._relay(scope, receive, send, route, response, path)
        return response.event.status_code, response.target

    async def _exchange(self, route: Route, head: RequestHead, body: RequestBody, receive: Receive) -> UpstreamResponse:
        """Send the request to the first target that takes it; return the response head."""
        error: UpstreamError | None = None
        for target in route.upstreams.order(time.monotonic()):
            for attempt in range(2):
                conn, reused = await self._connect(route, target)
                if conn is None:
                    break
                try:
                    return UpstreamResponse(conn, await self._round_trip(conn, head, body, receive), target)
                except UpstreamError as exc:
                    await conn.aclose()
                    error = exc
                    # A reused connection the upstream had closed: safe to try once more
                    # if nothing of the request could have been acted on (SPEC §4).
                    retry = reused and attempt == 0 and exc.kind == "closed" and body.replayable(head)
                    if not retry:
                        raise
        raise error or UpstreamError("refused", f"no upstream of {route.prefix or 'fallback'} accepted the connection")

    async def _connect(self, route: Route, target: Target) -> tuple[UpstreamConnection | None, bool]:
        try:
            return await self.pool.acquire(target)
        except UpstreamError as exc:
            if exc.kind != "refused" or len(route.upstreams.targets) == 1:
                raise
            log.warning("%s: %s; skipping it for a while", route.prefix, exc)
            route.upstreams.mark_down(target, time.monotonic())
            return None, False

    async def _round_trip(
        self, conn: UpstreamConnection, head: RequestHead, body: RequestBody, receive: Receive
    ) -> h11.Response:
        # _parsed: the headers were parsed and validated by the ASGI server (or are our
        # own), so h11's per-header regex checks would only repeat work on the hot path.
        await conn.send(h11.Request(method=head.method, target=head.target, headers=head.headers, _parsed=True))
        await body.send_to(conn)
        token = self.watchdog.watch(conn, self.options.read_timeout, receive)
        try:
            while True:
                event = await conn.next_event()
                if isinstance(event, h11.Response):
                    return event
                if isinstance(event, h11.ConnectionClosed):
                    host, port = conn.target
                    raise UpstreamError("closed", f"upstream {host}:{port} closed without a response")
                # h11.InformationalResponse (100 Continue): keep waiting for the real one.
        finally:
            self.watchdog.unwatch(token)

    async def _follow_redirect(
        self,
        route: Route,
        head: RequestHead,
        body: RequestBody,
        receive: Receive,
        response: UpstreamResponse,
        path: bytes,
    ) -> UpstreamResponse:
        if self.redirect_hook is None or head.length != 0 or head.chunked:
            return response
        new_path = self.redirect_hook(route, path, response)
        if new_path is None:
            return response
        await drain(response.conn)
        await self.pool.release(response.conn)
        self.redirects[(route.prefix, path.partition(b"?")[0])] = new_path
        query = head.target.partition(b"?")[2]
        again = RequestHead(head.method, new_path + (b"?" + query if query else b""), head.headers, 0, False)
        return await self._exchange(route, again, body, receive)

    async def _relay(
        self, scope: Scope, receive: Receive, send: Send, route: Route, response: UpstreamResponse, path: bytes
    ) -> None:
        event = response.event
        head = response_headers(event.headers)
        if head.conflicting:
            await response.conn.aclose()
            raise UpstreamError("protocol", "upstream response has both Content-Length and Transfer-Encoding")
        headers = head.headers
        if head.location >= 0:
            prefix = route.prefix if route.strip else ""
            name, value = headers[head.location]
            headers[head.location] = (name, rewrite_location(value, response.target, public_origin(scope), prefix))
        conn = response.conn
        hook = self.body_hook(route, path) if self.body_hook and scope["method"] == "GET" else None
        if hook is not None and 200 <= event.status_code < 300 and (head.length or 0) <= REWRITE_LIMIT:
            await self._relay_rewritten(send, conn, event.status_code, headers, hook, path)
            return
        await send({"type": "http.response.start", "status": event.status_code, "headers": headers})
        if scope["method"] == "HEAD" or event.status_code in _NO_BODY_STATUS:
            await drain(conn)
            await send({"type": "http.response.body", "body": b""})
        elif not head.event_stream and head.length is not None and head.length <= SMALL_BODY:
            await stream_body(conn, send, route.prefix or "fallback")
        else:
            await stream_watched(conn, send, receive, route.prefix or "fallback")
        await self.pool.release(conn)

    async def _relay_rewritten(
        self,
        send: Send,
        conn: UpstreamConnection,
        status: int,
        headers: list[tuple[bytes, bytes]],
        hook: BodyHook,
        path: bytes,
    ) -> None:
        """Buffer a small body (a docs page, openapi.json) and let the hook edit it."""
        chunks: list[bytes] = []
        while not isinstance(event := await conn.next_event(), h11.EndOfMessage):
            if isinstance(event, h11.ConnectionClosed):
                raise UpstreamError("closed", "upstream closed in the middle of the body")
            if isinstance(event, h11.Data):
                chunks.append(event.data)
        body = hook(path, b"".join(chunks))
        headers = [(k, v) for k, v in headers if k != b"content-length"] + [
            (b"content-length", str(len(body)).encode())
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        await self.pool.release(conn)


STATUS_TEXT = {502: "bad gateway", 504: "gateway timeout", 413: "request body too large"}


async def send_error(send: Send, exc: UpstreamError, route: Route) -> None:
    """The small JSON answer for a failed upstream (never a traceback)."""
    if isinstance(exc, MidBody):
        return  # the response has started: ending it short is all that is left
    status = 413 if exc.kind == "too_large" else exc.status
    body: dict[str, Any] = {"error": STATUS_TEXT[status], "route": route.prefix or "fallback"}
    if exc.kind != "too_large":
        body["reason"] = {"refused": "upstream refused the connection", "timeout": "upstream timed out"}.get(
            exc.kind, "upstream failed"
        )
    try:
        await send_json(send, status, body)
    except RuntimeError:
        pass  # the response had already started; the server closes the connection
