"""Forwarding one HTTP request: pick a target, send the head and body, relay the response.

Every connection this module takes from the pool is, on every path out,
either returned to it (the exchange ended cleanly) or closed: failures and
cancellation included (`_discard` is shielded). Every failure is a
`errors.ProxyError` raised where it happened; `answer_error` turns it into the
client's answer through the one table in `errors.py`.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import h11

from ..asgi.responses import answer_json
from ..asgi.types import Receive, Scope, Send
from ..config.model import Address, ProxySettings
from ..metrics.recorder import ProxyMetrics
from .accesslog import CountingSend, access_fields, log_access
from .bodies import RequestBody, ResponseBody
from .connection import UpstreamConnection
from .errors import (
    BodyTooLarge,
    ClientGone,
    MalformedResponse,
    ProxyError,
    ResponseHeadTimeout,
    UpstreamClosed,
    UpstreamError,
    outcome,
)
from .pool import Clock, Pool, Upstreams
from .protocol import (
    REQUEST_ID,
    RequestHead,
    choose_request_id,
    log_extra,
    log_request_id,
    log_target,
    public_origin,
    raw_path,
    request_head,
    response_headers,
    rewrite_location,
    slashed,
    upstream_target,
)
from .watchdog import Watchdog

log = logging.getLogger("qkhyper.proxy")

# Bodies up to this size with a Content-Length are relayed without a disconnect watcher.
SMALL_BODY = 1024 * 1024
# Largest docs page or openapi.json the body rewriter may buffer; beyond it the body passes unmodified.
REWRITE_LIMIT = 4 * 1024 * 1024
# Paths --fastapi-redirect remembers; the oldest is forgotten first.
REDIRECT_MEMO_SIZE = 1024
# --fastapi-redirect: request bodies up to this size are kept while sent, so a 307/308 can be followed
# with the same method and body; a larger body is not held in memory, and the client gets the redirect.
REDIRECT_BODY = 1024 * 1024
_NO_BODY_STATUS = frozenset({204, 304})


@dataclass(frozen=True)
class Route:
    """Where a prefix goes. `strip` is False for upstreams that expect the full path."""

    prefix: str  # "/users"; "" for the fallback route
    upstreams: Upstreams
    strip: bool = True
    idle_timeout: float = 60.0  # upstream_idle_timeout of this route
    sse_idle_timeout: float = 0.0
    add_slashes: bool = False  # append `/` to the upstream path (protocol.slashed)
    tls: ssl.SSLContext | None = None  # https:// targets: the context, made once per worker
    base: bytes = b""  # put in front of every upstream path: b"/v1"
    hosts: Mapping[Address, bytes] | None = None  # rewrite_host: the Host each target is asked for
    follow_redirects: bool = True  # when the core has a RedirectFollower (--fastapi-redirect)
    redirect_cache: bool = True  # remember where a followed redirect led (RedirectMemo)
    forwarded_host: bool = True  # send X-Forwarded-Host

    @property
    def label(self) -> str:
        return self.prefix or "fallback"


# (route, route-relative path) -> a function that edits the whole body, or None to leave it alone.
BodyRewriter = Callable[[Route, bytes], Callable[[bytes], bytes] | None]
# (route, route-relative path, response) -> the path to ask instead, or None to pass the response on.
RedirectFollower = Callable[[Route, bytes, h11.Response], bytes | None]


class RedirectMemo:
    """What --fastapi-redirect learned (`/items` is really `/items/`), bounded, least recently used out."""

    def __init__(self, size: int = REDIRECT_MEMO_SIZE) -> None:
        self.size = size
        self._paths: OrderedDict[tuple[str, bytes], bytes] = OrderedDict()

    def get(self, prefix: str, path: bytes) -> bytes | None:
        found = self._paths.get((prefix, path))
        if found is not None:
            self._paths.move_to_end((prefix, path))
        return found

    def put(self, prefix: str, path: bytes, new_path: bytes) -> None:
        self._paths[(prefix, path)] = new_path
        self._paths.move_to_end((prefix, path))
        while len(self._paths) > self.size:
            self._paths.popitem(last=False)

    def __len__(self) -> int:
        return len(self._paths)


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """A response head, and the connection its body is still to come on."""

    conn: UpstreamConnection
    event: h11.Response
    target: Address


def may_retry(exc: ProxyError, *, reused: bool, nothing_sent: bool, replayable: bool) -> bool:
    """SPEC §4: a pooled connection that turns out closed is retried once, on a fresh one.

    Only when the close came before any byte of the response (so the upstream
    gave no answer to act on), and either no byte of the request was written,
    or the method is idempotent and the body empty (so sending it again is safe).
    """
    return reused and isinstance(exc, UpstreamClosed) and exc.before_response and (nothing_sent or replayable)


class Forwarder:
    def __init__(
        self,
        pool: Pool,
        watchdog: Watchdog,
        settings: ProxySettings,
        *,
        rewrite_body: BodyRewriter | None = None,
        follow_redirect: RedirectFollower | None = None,
        clock: Clock = time.monotonic,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.watchdog = watchdog
        self.settings = settings
        self.rewrite_body = rewrite_body
        self.follow_redirect = follow_redirect
        self.redirects = RedirectMemo()
        self.clock = clock
        self.prefixes: list[str] = []  # every route's prefix (ProxyCore.route adds them): Location rewriting

    async def __call__(self, scope: Scope, receive: Receive, send: Send, route: Route, matched: int) -> None:
        """Forward the request; `matched` bytes of `raw_path` spelled the route's prefix."""
        started = self.clock()
        record = _Record(choose_request_id(scope["headers"]) if self.settings.request_id else None)
        target: Address | None = None
        counted = CountingSend(send) if self.settings.access_log else None  # the size of the access line
        try:
            target = await self._forward(scope, receive, counted or send, record, route, matched)
        except ProxyError as exc:
            await self._fail(scope, counted or send, record, route, exc)
        finally:
            if self.metrics is not None:
                self.metrics.request(route.label, scope["method"], record.status, self.clock() - started)
            if counted is not None:
                elapsed_ms = (self.clock() - started) * 1000
                fields = access_fields(
                    scope, record.status, route.label, target, elapsed_ms, record.request_id, counted.sent
                )
                log_access(scope, fields, self.settings.access_log_format)

    async def _fail(self, scope: Scope, send: Send, record: _Record, route: Route, exc: ProxyError) -> None:
        method, path, tag = scope["method"], log_target(scope), log_request_id(record.request_id)
        extra = log_extra(record.request_id)
        if self.metrics is not None and isinstance(exc, UpstreamError):
            self.metrics.failure(route.label, outcome(exc).label)
        if record.started:
            log.warning("%s %s -> %s: %s; response cut short%s", method, path, route.label, exc, tag, extra=extra)
            return  # ending the response short is all that is left: the server closes the connection
        record.status = outcome(exc).status
        if isinstance(exc, ClientGone):
            return  # the status is for the access log only: nobody is listening
        log.warning("%s %s -> %s: %s%s", method, path, route.label, exc, tag, extra=extra)
        await answer_error(scope, send, exc, route, record.request_id)

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, record: _Record, route: Route, matched: int
    ) -> Address:
        raw = raw_path(scope)
        path = raw[matched:] if route.strip else raw
        if route.add_slashes:
            path = slashed(path or b"/")
        following = self.follow_redirect is not None and route.follow_redirects
        if following and route.redirect_cache:
            path = self.redirects.get(route.prefix, path) or path
        sent_path = upstream_target(route.base + path if route.base else path, scope["query_string"])
        head = request_head(scope, sent_path, _sent_prefix(route), record.request_id, route.forwarded_host)
        limit = self.settings.max_body_size
        if limit and (head.length or 0) > limit:
            raise BodyTooLarge(f"request body of {head.length} bytes over max_body_size ({limit})")
        body = RequestBody(
            receive,
            head,
            limit=limit,
            client_timeout=self.settings.client_body_timeout,
            send_timeout=self.settings.read_timeout,
            keep=REDIRECT_BODY if following else 0,
        )
        response = await self._exchange(route, head, body, receive)
        response = await self._follow(route, head, body, receive, response, path)
        await self._relay(scope, receive, send, record, route, response, path)  # owns response.conn
        return response.target

    async def _exchange(self, route: Route, head: RequestHead, body: RequestBody, receive: Receive) -> UpstreamResponse:
        """The response head from the first target that takes the request."""
        head.check_target()  # a BadRequest before any connection is taken
        upstreams = route.upstreams
        if len(upstreams.targets) == 1:  # the common case, without a closure
            return await self._exchange_with(route, upstreams.targets[0], head, body, receive)

        async def attempt(target: Address) -> UpstreamResponse:
            return await self._exchange_with(route, target, head, body, receive)

        return await upstreams.first(attempt, self.clock(), route.label, head.request_id)

    async def _exchange_with(
        self,
        route: Route,
        target: Address,
        head: RequestHead,
        body: RequestBody,
        receive: Receive,
    ) -> UpstreamResponse:
        if route.hosts is not None:  # rewrite_host: each target is asked for by its own name
            head = dataclasses.replace(head, headers=[(b"host", route.hosts[target]), *head.headers[1:]])
        conn, reused = await self.pool.acquire(target, route.tls)
        try:
            return UpstreamResponse(conn, await self._round_trip(conn, head, body, receive), target)
        except UpstreamClosed as exc:
            await _discard(conn)
            if not may_retry(
                exc, reused=reused, nothing_sent=not conn.wrote, replayable=head.idempotent and body.empty
            ):
                raise
            tag, extra = log_request_id(head.request_id), log_extra(head.request_id)
            log.info("%s:%d closed a pooled connection (%s); retrying on a new one%s", *target, exc, tag, extra=extra)
        except BaseException:
            await _discard(conn)
            raise
        conn = await self.pool.connect(target, route.tls)
        try:
            return UpstreamResponse(conn, await self._round_trip(conn, head, body, receive), target)
        except BaseException:
            await _discard(conn)
            raise

    async def _round_trip(
        self, conn: UpstreamConnection, head: RequestHead, body: RequestBody, receive: Receive
    ) -> h11.Response:
        await conn.send_head(head)
        try:
            await body.send_to(conn)
        except UpstreamClosed:
            # An upstream may answer before it has read the whole body (413, 401, 403)
            # and close. The answer arrived before its reset, and the kernel still
            # hands it out: relay it, as the upstream meant, instead of a 502. The
            # connection is not reused (h11 saw our side fail).
            try:
                return await self._response_head(conn, receive)
            except ProxyError:
                pass
            raise
        return await self._response_head(conn, receive)

    async def _response_head(self, conn: UpstreamConnection, receive: Receive) -> h11.Response:
        timeout = self.settings.read_timeout
        token = self.watchdog.watch(conn, timeout, lambda: _head_timeout(timeout), receive)
        try:
            while not isinstance(event := await conn.next_event(), h11.Response):
                pass  # h11.InformationalResponse (100 Continue, 103 Early Hints): wait for the real one
            return event
        finally:
            self.watchdog.unwatch(token)

    async def _follow(
        self,
        route: Route,
        head: RequestHead,
        body: RequestBody,
        receive: Receive,
        response: UpstreamResponse,
        path: bytes,
    ) -> UpstreamResponse:
        """--fastapi-redirect: ask again at the path an upstream's trailing-slash redirect names.

        The redirect's connection is closed rather than drained: its body is of no
        use, and an upstream could make it endless.
        """
        if self.follow_redirect is None or not route.follow_redirects or not body.replayable:
            return response  # a body not kept whole (over REDIRECT_BODY): the client gets the redirect
        try:
            new_path = self.follow_redirect(route, path, response.event)
        except BaseException:
            await _discard(response.conn)
            raise
        if new_path is None:
            return response
        await _discard(response.conn)
        if route.redirect_cache:
            self.redirects.put(route.prefix, path, new_path)
        query = head.target.partition(b"?")[2]
        again = dataclasses.replace(head, target=route.base + new_path + (b"?" + query if query else b""))
        return await self._exchange(route, again, body, receive)

    async def _relay(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: _Record,
        route: Route,
        response: UpstreamResponse,
        path: bytes,
    ) -> None:
        event = response.event
        conn = response.conn
        head = response_headers(event.headers, record.request_id)
        idle = route.sse_idle_timeout if head.event_stream else route.idle_timeout
        body = ResponseBody(
            conn, send, self.watchdog, idle=idle, send_timeout=self.settings.send_timeout, release=self.pool.release
        )
        try:
            if head.conflicting:
                raise MalformedResponse("upstream response has both Content-Length and Transfer-Encoding")
            if not 200 <= event.status_code < 600:  # 1xx were skipped; h11 takes any three digits
                raise MalformedResponse(f"upstream answered with status {event.status_code}")
            headers = head.headers
            if head.location >= 0:
                name, value = headers[head.location]
                public = public_origin(scope)
                location = rewrite_location(
                    value, response.target, public, _sent_prefix(route), self.prefixes, route.base
                )
                headers[head.location] = (name, location)
            record.status = event.status_code
            edit = self._rewriter(scope, route, path, event.status_code, head.length)
            if edit is not None:
                await self._relay_rewritten(body, record, headers, edit)
                return
            bodiless = scope["method"] == "HEAD" or event.status_code in _NO_BODY_STATUS
            if event.status_code in _NO_BODY_STATUS:
                # No body may follow (RFC 9110 §15.3.5, §15.4.5); a length would make servers wait for one.
                headers = [(k, v) for k, v in headers if k != b"content-length"]
            record.started = True
            await send({"type": "http.response.start", "status": event.status_code, "headers": headers})
            # h11 knows HEAD, 204 and 304 have no body (it ends at once); a short body
            # needs no task watching for the client leaving (performance only).
            small = bodiless or (not head.event_stream and head.length is not None and head.length <= SMALL_BODY)
            if head.event_stream and self.metrics is not None:
                await self._relay_counted(body, receive, self.metrics)
            else:
                await body.relay(None if small else receive)
        except BaseException:
            await body.close()
            raise

    @staticmethod
    async def _relay_counted(body: ResponseBody, receive: Receive, metrics: ProxyMetrics) -> None:
        """An SSE response, counted as an open stream while it lasts."""
        metrics.stream("sse", 1)
        try:
            await body.relay(receive)
        finally:
            metrics.stream("sse", -1)

    def _rewriter(
        self, scope: Scope, route: Route, path: bytes, status: int, length: int | None
    ) -> Callable[[bytes], bytes] | None:
        if self.rewrite_body is None or scope["method"] != "GET" or not 200 <= status < 300:
            return None
        if length is not None and length > REWRITE_LIMIT:
            return None
        return self.rewrite_body(route, path)

    async def _relay_rewritten(
        self, body: ResponseBody, record: _Record, headers: list[tuple[bytes, bytes]], edit: Callable[[bytes], bytes]
    ) -> None:
        """Buffer a docs page or openapi.json and edit it; past REWRITE_LIMIT, pass it on unmodified."""
        chunks, ended = await body.read_up_to(REWRITE_LIMIT)
        status = record.status
        record.started = True
        if not ended:  # too big to edit: what was read goes first, then the rest as it comes
            await body.send({"type": "http.response.start", "status": status, "headers": headers})
            await body.send_more(b"".join(chunks))
            await body.relay(None)
            return
        data = edit(b"".join(chunks))
        headers = [(k, v) for k, v in headers if k != b"content-length"]
        headers.append((b"content-length", str(len(data)).encode()))
        await body.send({"type": "http.response.start", "status": status, "headers": headers})
        await body.send({"type": "http.response.body", "body": data})


class _Record:
    """One request's ID (None: request IDs are off), status (for the access log), and whether its response started."""

    __slots__ = ("request_id", "started", "status")

    def __init__(self, request_id: bytes | None) -> None:
        self.request_id = request_id
        self.started = False
        self.status = 0


def _sent_prefix(route: Route) -> str:
    """The X-Forwarded-Prefix an upstream gets: the prefix it does not see in its path."""
    return route.prefix if route.strip else ""


def _head_timeout(timeout: float) -> ResponseHeadTimeout:
    return ResponseHeadTimeout(f"no response head within {timeout:g} s")


async def _discard(conn: UpstreamConnection) -> None:
    """Close a connection whose exchange failed or was cancelled (`aclose` is shielded)."""
    await conn.aclose()


async def answer_error(scope: Scope, send: Send, exc: ProxyError, route: Route, request_id: bytes | None) -> None:
    """The small JSON answer for a failed request or WebSocket handshake (never a traceback).

    With request IDs on, the ID is in the body as well as the header: it is what
    a user pastes into a bug report, and what finds the request's log lines.
    """
    result = outcome(exc)
    body: dict[str, object] = {"error": result.error, "route": route.label}
    if result.reason:
        body["reason"] = result.reason
    elif result.status == 400:
        body["detail"] = str(exc)
    if exc.detail:
        body["detail"] = exc.detail
    headers = [(b"connection", b"close")] if result.status in _CLOSE else []
    if request_id is not None:
        body["request_id"] = request_id.decode("ascii")
        headers.append((REQUEST_ID, request_id))
    await answer_json(scope, send, result.status, body, headers)


# After these the client's connection may hold bytes nobody read (a body, a smuggled request): close it.
_CLOSE = frozenset({400, 408, 413})
