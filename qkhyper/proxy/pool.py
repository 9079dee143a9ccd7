"""Keep-alive connections per upstream target, and the order targets are tried in.

LIFO reuse keeps the hottest connections busy and lets the rest age out; an
idle connection older than `idle_timeout` is never reused. The default (4 s)
sits below the 5 s after which Hypercorn and uvicorn close idle connections,
so the proxy drops a connection before the upstream can (RELIABILITY §2). An
idle connection the upstream closed anyway is seen as readable and dropped
before reuse; the close that is still on its way is the forwarder's retry.

Connections are pooled by target, and TLS ones by (target, TLS context): a
plain connection never serves an https:// route nor the other way round, and
routes with different certificate checks never share one.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TypeVar

import anyio

from ..config.model import Address
from .backend import NetworkBackend
from .codec import CodecFactory, H11Codec
from .connection import UpstreamConnection
from .errors import ConnectFailed, ConnectTimeout, TlsFailed
from .protocol import log_extra, log_request_id

Clock = Callable[[], float]
T = TypeVar("T")

log = logging.getLogger("qkhyper.proxy")

# How long a target that refused a connection is skipped (SPEC §4, passive health).
DOWN_FOR = 10.0


class Pool:
    def __init__(
        self,
        backend: NetworkBackend,
        *,
        max_idle: int,
        idle_timeout: float,
        connect_timeout: float,
        clock: Clock = time.monotonic,
        codec: CodecFactory = H11Codec,
    ) -> None:
        self.backend = backend
        self.codec = codec  # what each new connection speaks HTTP/1.1 with
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.clock = clock
        self._idle: dict[Hashable, list[UpstreamConnection]] = {}  # by target, or (target, TLS context)
        # For the metrics (`stats`): plain counts, kept whether metrics are on or not.
        self.opened = 0
        self.reused = 0
        self.open = 0

    async def acquire(self, target: Address, tls: ssl.SSLContext | None = None) -> tuple[UpstreamConnection, bool]:
        """A connection to `target` (over TLS with `tls`) and whether it was reused from the pool.

        Raises:
            ConnectFailed, ConnectTimeout: a new connection could not be opened.
            TlsFailed: its TLS handshake failed.
        """
        idle = self._idle.get(target if tls is None else (target, tls))
        now = self.clock()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since >= self.idle_timeout:
                # LIFO: everything below this one is older still.
                stale = [conn, *idle]
                idle.clear()
                for old in stale:
                    await old.aclose()
                break
            if conn.stream.is_readable():  # closed by the upstream while idle
                await conn.aclose()
                continue
            self.reused += 1
            return conn, True
        return await self.connect(target, tls), False

    async def connect(self, target: Address, tls: ssl.SSLContext | None = None) -> UpstreamConnection:
        """A new connection to `target` (over TLS with `tls`), within `connect_timeout`, handshake included.

        Raises:
            ConnectFailed, ConnectTimeout, TlsFailed
        """
        host, port = target
        try:
            with anyio.fail_after(self.connect_timeout):
                stream = await self.backend.connect_tcp(host, port, tls)
        except TimeoutError:
            what = "connect to" if tls is None else "connect (TLS handshake included) to"
            raise ConnectTimeout(f"{what} {host}:{port} timed out after {self.connect_timeout:g} s") from None
        except ssl.SSLError as exc:
            reason = tls_reason(exc)
            raise TlsFailed(f"TLS handshake with {host}:{port} failed: {reason}", f"upstream TLS: {reason}") from None
        except OSError as exc:
            raise ConnectFailed(f"connect to {host}:{port} failed: {exc.strerror or exc}") from None
        self.opened += 1
        self.open += 1
        return UpstreamConnection(stream, target, self._closed, target if tls is None else (target, tls), self.codec)

    def _closed(self) -> None:
        self.open -= 1

    def stats(self) -> tuple[int, int, int, int]:
        """Connections (idle, in use) now, and (opened, reused) so far."""
        idle = sum(len(conns) for conns in self._idle.values())
        return idle, self.open - idle, self.opened, self.reused

    async def release(self, conn: UpstreamConnection) -> None:
        """Return a finished connection, or close it if it cannot be reused."""
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) < self.max_idle and conn.recycle(self.clock()):
            idle.append(conn)
        else:
            await conn.aclose()

    def idle_count(self, target: Address, tls: ssl.SSLContext | None = None) -> int:
        return len(self._idle.get(target if tls is None else (target, tls), ()))

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                await conn.aclose()
        self._idle.clear()


def tls_reason(exc: ssl.SSLError) -> str:
    """What went wrong in a handshake, in words: "certificate verify failed: Hostname mismatch, ..."."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    reason = exc.reason.lower().replace("_", " ") if exc.reason else str(exc)
    hint = " (is it serving plain HTTP?)" if exc.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE") else ""
    return f"handshake failed: {reason}{hint}"


class Upstreams:
    """The targets of one route: round-robin, skipping those that refused recently."""

    async def first(
        self, attempt: Callable[[Address], Awaitable[T]], now: float, label: str, request_id: bytes | None = None
    ) -> T:
        """`attempt(target)` on each target in turn until one does not refuse the connection.

        Nothing was sent to a target that refused, so the next may have the
        request; the refusing one is skipped for DOWN_FOR seconds. The line that
        says so names the request's ID.

        Raises:
            ConnectFailed: every target refused (the last refusal); any other
                error of `attempt` at once.
        """
        targets = self.order(now)
        for target in targets[:-1]:
            try:
                return await attempt(target)
            except ConnectFailed as exc:
                tag, extra = log_request_id(request_id), log_extra(request_id)
                log.warning("%s: %s; skipping it for a while%s", label, exc, tag, extra=extra)
                self.mark_down(target, now)
        try:
            return await attempt(targets[-1])
        except ConnectFailed:
            self.mark_down(targets[-1], now)
            raise

    def __init__(self, targets: Sequence[Address]) -> None:
        self.targets = list(targets)
        self._next = 0
        self._down_until: dict[Address, float] = {}

    def order(self, now: float) -> list[Address]:
        """Targets to try for one request, healthy ones first."""
        if len(self.targets) == 1:
            return self.targets
        start = self._next
        self._next = (start + 1) % len(self.targets)
        rotated = self.targets[start:] + self.targets[:start]
        healthy = [t for t in rotated if self._down_until.get(t, 0.0) <= now]
        return healthy + [t for t in rotated if t not in healthy]

    def mark_down(self, target: Address, now: float) -> None:
        if len(self.targets) > 1:
            self._down_until[target] = now + DOWN_FOR
