"""The supervisor's metrics listener: `/metrics`, `/healthz`, `/readyz`, and nothing else.

It runs as a task in the supervisor's nursery, on a socket bound before any
worker starts (a clash is one line and exit 2, like an app's port), and
closed at shutdown. It faces whoever can reach `metrics_host`, so it is
small and bounded: h11 parses the request head with a size cap (431 over
it, 400 for anything h11 refuses), every connection has one deadline for
reading the request and writing the answer, there is one request per
connection (`Connection: close`), and connections beyond a cap are closed
at once rather than queued. Only GET and HEAD (405 otherwise); any other
path is a 404 JSON body.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import h11
import trio
from prometheus_client import CONTENT_TYPE_LATEST

from ..config.model import Address
from ..supervisor.sockets import bind_socket
from . import health
from .collector import SupervisorCollector, exposition, make_registry
from .store import MetricsStore
from .view import RestartTotals, SupervisorLike, SupervisorSample, sample

# Bytes of request line plus headers; a scraper or probe sends a few hundred.
MAX_HEAD = 8192
# Seconds a connection may take from accept to the end of the answer.
DEADLINE = 10.0
# Connections served at once; more are closed unanswered.
MAX_CONNECTIONS = 16
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}
_REASONS |= {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}
_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


def json_answer(status: int, body: object, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Answer:
    return Answer(status, _JSON, json.dumps(body).encode() + b"\n", headers)


def route(method: str, target: bytes, paths: dict[bytes, Callable[[], Answer]]) -> Answer:
    """The answer for one request line; `paths` maps each path to what computes its answer."""
    if method not in ("GET", "HEAD"):
        return json_answer(405, {"error": "method not allowed"}, ((b"allow", b"GET, HEAD"),))
    found = paths.get(target.partition(b"?")[0])
    if found is None:
        return json_answer(404, {"error": "not found", "paths": sorted(p.decode() for p in paths)})
    return found()


def encode(answer: Answer, head_only: bool) -> bytes:
    reason = _REASONS.get(answer.status, b"")
    lines = [
        b"HTTP/1.1 %d %s" % (answer.status, reason),
        b"content-type: " + answer.content_type.encode(),
        b"content-length: %d" % len(answer.body),
        b"cache-control: no-store",
        b"connection: close",
        *(name + b": " + value for name, value in answer.headers),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head_only else answer.body)


async def read_request(stream: trio.abc.ReceiveStream, max_head: int) -> h11.Request | None:
    """The request head, or None when the client left first.

    Raises:
        h11.RemoteProtocolError: not HTTP/1.x as h11 reads it, or a head over `max_head` bytes.
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Request):
            return event
        if event is h11.NEED_DATA:
            data = await stream.receive_some(4096)
            conn.receive_data(bytes(data))  # b"" is EOF: the next event is ConnectionClosed, or an error mid-head
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def handle(
    stream: trio.abc.Stream,
    paths: dict[bytes, Callable[[], Answer]],
    *,
    timeout: float = DEADLINE,
    max_head: int = MAX_HEAD,
) -> None:
    """Answer one request on `stream`, then close it; at `timeout` seconds it is closed whatever happened."""
    with trio.move_on_after(timeout):
        try:
            answer = await _answer(stream, paths, max_head)
            if answer is not None:
                await stream.send_all(encode(*answer))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client left; nothing to answer
    with trio.move_on_after(0.5) as cleanup:
        cleanup.shield = True
        await stream.aclose()


async def _answer(
    stream: trio.abc.ReceiveStream, paths: dict[bytes, Callable[[], Answer]], max_head: int
) -> tuple[Answer, bool] | None:
    """The answer to the request on `stream` and whether it is for a HEAD; None when the client left first."""
    try:
        request = await read_request(stream, max_head)
    except h11.RemoteProtocolError as exc:
        status = 431 if exc.error_status_hint == 431 else 400
        return json_answer(status, {"error": _REASONS[status].decode().lower()}), False
    if request is None:
        return None
    method = request.method.decode("ascii", "replace")
    return route(method, request.target, paths), method == "HEAD"


class MetricsEndpoint:
    """One supervisor's listener, its workers' store and its registry."""

    def __init__(self, sock: socket.socket, *, max_connections: int = MAX_CONNECTIONS) -> None:
        self.sock = sock
        self.store = MetricsStore()
        self.max_connections = max_connections
        self._totals = RestartTotals()
        self._supervisor: SupervisorLike | None = None
        self._started_at = 0.0
        self.registry = make_registry(SupervisorCollector(self.sample, self.store.total))

    def sample(self) -> SupervisorSample:
        if self._supervisor is None:
            return SupervisorSample({}, {}, {})
        return sample(self._supervisor, self._totals, trio.current_time(), self._started_at)

    def paths(self) -> dict[bytes, Callable[[], Answer]]:
        return {
            b"/metrics": lambda: Answer(200, CONTENT_TYPE_LATEST, exposition(self.registry)),
            b"/healthz": lambda: json_answer(*health.healthz(self.sample().apps)),
            b"/readyz": lambda: json_answer(*self._ready()),
        }

    def _ready(self) -> health.Answer:
        sup = self._supervisor
        return health.readyz(sup is not None and sup.ready, sup is not None and sup.draining)

    async def serve(self, supervisor: SupervisorLike) -> None:
        """Serve until cancelled (the supervisor's nursery ends)."""
        self._supervisor = supervisor
        self._started_at = trio.current_time()
        handler = self.connection_handler()
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self.sock))
        await trio.serve_listeners(handler, [listener])

    def connection_handler(self, timeout: float = DEADLINE) -> Callable[[trio.abc.Stream], Awaitable[None]]:
        """What serves each accepted connection: at most `max_connections` at once, the rest closed unanswered."""
        limiter = trio.Semaphore(self.max_connections)
        paths = self.paths()

        async def one(stream: trio.abc.Stream) -> None:
            try:
                limiter.acquire_nowait()
            except trio.WouldBlock:
                await trio.aclose_forcefully(stream)
                return
            try:
                await handle(stream, paths, timeout=timeout)
            finally:
                limiter.release()

        return one


def bind_metrics(address: Address) -> socket.socket:
    """Bind and listen (not inheritable: workers never see it).

    Raises:
        ConfigError: one line, when the port is taken or the host cannot be bound.
    """
    return bind_socket(*address, "metrics", 64, inheritable=False)


@contextmanager
def metrics_endpoint(address: Address | None) -> Iterator[MetricsEndpoint | None]:
    """The endpoint for `address` (None: metrics off), its socket closed when the block ends."""
    if address is None:
        yield None
        return
    sock = bind_metrics(address)
    try:
        yield MetricsEndpoint(sock)
    finally:
        sock.close()
