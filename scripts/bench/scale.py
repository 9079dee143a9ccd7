"""Load clients for the bench's scale rows (SPEC section 7, "gateway at scale").

wrk measures throughput on 64 busy connections; these rows measure what many
*concurrent* connections cost a proxy worker and whether it loses anything:

- idle: N keep-alive connections, each with one answered GET, sit idle, then each
  gets one more GET, which must be answered 200 (so all of them stayed open);
- ws: N WebSockets to an echo upstream, each sending one message a second
  (spread evenly over the second) for S seconds; every message must come back;
- sse: N event streams from the upstream, one event a second each; every event
  must arrive, and the delay from the upstream's send to our read is reported.

The client is plain asyncio (uvloop when importable) on raw sockets, with
hand-rolled HTTP/1.1 and WebSocket framing: the client, the proxy under test and
the upstream share two cores, so the client has to be the cheapest of the three.
It runs in the bench process itself: nothing else runs there during a row (the
servers are subprocesses), so no other thread competes for its GIL. The WebSocket
and SSE clients are `asyncio.Protocol`s that parse in `data_received`, so a message
costs no task wake-up. Connections open `BATCH` at a time, each within
`OPEN_TIMEOUT`, the whole opening within `OPEN_DEADLINE`; every later wait has a
deadline too.

Memory is the RSS of the server's whole process tree (qkhyper's supervisor and its
one worker; nginx's master and its one worker), measured idle after a warm-up
and again with the N connections open (the highest sample while messages flow);
(after - before) / N is the cost of one connection, both legs of a proxied one
(client side and upstream side) included. The upstream's memory is not counted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import psutil

BATCH = 500  # connections being opened at once
OPEN_TIMEOUT = 10.0  # one connection: TCP, handshake or first answer
OPEN_DEADLINE = 40.0  # all N of them
DRAIN_SECONDS = 5.0  # after the last send: time for the last echoes and events to arrive
SLOTS = 50  # a second is cut into this many send slots (20 ms): the WebSockets' sends spread over it
FD_MARGIN = 256  # descriptors a process needs besides its connections (listeners, logs, pipes, imports)
KINDS = ("idle", "ws", "sse")


@dataclass(frozen=True)
class Scale:
    """What a scale row asks of each side, and the limits that decide pass or fail (SPEC section 7)."""

    kind: str  # one of KINDS
    connections: int
    seconds: float  # idle: how long the connections sit idle; ws/sse: how long messages or events flow
    rss_limit_kb: float | None = None  # per connection, both legs
    p99_limit_ms: float | None = None

    def fds_needed(self) -> int:
        """Descriptors the proxy needs: a proxied WebSocket or stream holds two sockets, an idle
        keep-alive connection one (its upstream connection went back to a small pool)."""
        legs = 1 if self.kind == "idle" else 2
        return legs * self.connections + FD_MARGIN


@dataclass
class Outcome:
    """What one side did; `expected - received` is what was lost."""

    wanted: int
    opened: int = 0  # connections through their handshake (and, idle, first answer)
    held: int = 0  # open at the same time (idle: still open when asked again)
    expected: int = 0  # answers, echoes or events that should have come back
    received: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    rss_before_kb: int | None = None
    rss_after_kb: int | None = None
    cpu_percent: float | None = None  # the server tree's CPU over the measured run, % of one core
    # SSE: events sent from this time.time() on are timed; earlier ones (while streams were still
    # being opened, BATCH at a time) count for losses only. inf until every stream is open.
    steady_since: float = math.inf
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def lost(self) -> int:
        return self.expected - self.received

    @property
    def rss_kb_per_conn(self) -> float | None:
        if self.rss_before_kb is None or self.rss_after_kb is None or not self.opened:
            return None
        return round((self.rss_after_kb - self.rss_before_kb) / self.opened, 1)

    def error(self, what: str) -> None:
        self.errors[what] += 1


def p99(values: list[float]) -> float | None:
    """Nearest-rank 99th percentile (the value 99 % of samples are at or below); None for no samples."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard one; the servers started after this inherit it. Returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def tree_sum(pid: int, measure: Callable[[psutil.Process], float]) -> float:
    """`measure` summed over a process and its living descendants (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += measure(proc)
    return total


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants, in KiB."""
    return int(tree_sum(pid, lambda proc: proc.memory_info().rss)) // 1024


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its living descendants: a server near 100 % of one core is
    saturated, which explains long round trips better than a guess."""

    def cpu(proc: psutil.Process) -> float:
        times = proc.cpu_times()
        return float(times.user + times.system)

    return tree_sum(pid, cpu)


def verdict(scale: Scale, ours: Outcome) -> tuple[bool, list[str]]:
    """Pass when qkhyper held every connection and lost nothing, within the row's limits; the notes say what missed."""
    misses = []
    if ours.opened < scale.connections or ours.held < scale.connections:
        misses.append(f"qkhyper opened {ours.opened}, held {ours.held} of {scale.connections}")
    if ours.lost:
        misses.append(f"qkhyper lost {ours.lost} of {ours.expected}")
    rss = ours.rss_kb_per_conn
    if scale.rss_limit_kb is not None and (rss is None or rss > scale.rss_limit_kb):
        misses.append(f"qkhyper {rss} KB/conn > {scale.rss_limit_kb:g}")
    ours_p99 = p99(ours.latencies_ms)
    if scale.p99_limit_ms is not None and (ours_p99 is None or ours_p99 >= scale.p99_limit_ms):
        shown = None if ours_p99 is None else round(ours_p99, 1)
        misses.append(f"qkhyper p99 {shown} ms >= {scale.p99_limit_ms:g}")
    return not misses, misses


def errors_note(label: str, outcome: Outcome) -> str | None:
    """The three most frequent client-side errors of one side, for the notes."""
    if not outcome.errors:
        return None
    top = ", ".join(f"{what} x{n}" for what, n in outcome.errors.most_common(3))
    return f"{label} errors: {top}"


def result_fields(scale: Scale, ours: Outcome, reference: Outcome, notes: list[str]) -> dict[str, Any]:
    """The Result fields of a scale row (ratio and target stay None: these rows pass on absolute limits)."""
    passed, misses = verdict(scale, ours)
    extra = [note for note in (errors_note("qkhyper", ours), errors_note("reference", reference)) if note]
    if ours.cpu_percent is not None and reference.cpu_percent is not None:
        notes = [*notes, f"CPU qkhyper {ours.cpu_percent:.0f} %, nginx {reference.cpu_percent:.0f} % of a core"]
    ref_p99, ours_p99 = p99(reference.latencies_ms), p99(ours.latencies_ms)
    return {
        "passed": passed,
        "connections": scale.connections,
        "qkhyper_connections": ours.held,
        "reference_connections": reference.held,
        "qkhyper_lost": ours.lost,
        "reference_lost": reference.lost,
        "qkhyper_p99_ms": None if ours_p99 is None else round(ours_p99, 2),
        "reference_p99_ms": None if ref_p99 is None else round(ref_p99, 2),
        "qkhyper_rss_kb_per_conn": ours.rss_kb_per_conn,
        "reference_rss_kb_per_conn": reference.rss_kb_per_conn,
        "notes": "; ".join([*notes, *misses, *extra]) or None,
    }


# ---------------------------------------------------------------- HTTP/1.1 ---


def get_request(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and lower-cased headers of a response head (up to and including the blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


def take_head(buf: bytearray) -> tuple[int, dict[str, str]] | None:
    """A complete response head taken off the front of `buf` (status, headers), or None while incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = parse_head(bytes(buf[: end + 4]))
    del buf[: end + 4]
    return head


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """One whole response (Content-Length or chunked body, which is read and dropped)."""
    status, headers = parse_head(await reader.readuntil(b"\r\n\r\n"))
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    return status, headers


async def open_all(n: int, opener: Callable[[int], Awaitable[Any]], outcome: Outcome) -> list[Any]:
    """Run opener(i) for i < n, BATCH at a time, each within OPEN_TIMEOUT, all within OPEN_DEADLINE."""
    gate = asyncio.Semaphore(BATCH)
    deadline = time.monotonic() + OPEN_DEADLINE

    async def one(i: int) -> Any:
        async with gate:
            left = deadline - time.monotonic()
            if left <= 0:
                outcome.error("open deadline passed")
                return None
            try:
                return await asyncio.wait_for(opener(i), min(OPEN_TIMEOUT, left))
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                outcome.error(f"open: {type(exc).__name__} {exc}"[:80])
                return None

    opened = [conn for conn in await asyncio.gather(*(one(i) for i in range(n))) if conn is not None]
    outcome.opened = len(opened)
    return opened


# -------------------------------------------------------------------- idle ---


async def run_idle(scale: Scale, host: str, port: int, path: str, rss: Callable[[], int]) -> Outcome:
    """N keep-alive connections, one GET each; idle for `seconds`; then one more GET each, all must be 200."""
    out = Outcome(scale.connections)
    request = get_request(path)

    async def opener(_: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            status, headers = await read_response(reader)
            if status != 200 or headers.get("connection", "").lower() == "close":
                raise ValueError(f"first answer {status} {headers.get('connection', '')}")
        except BaseException:
            writer.close()
            raise
        return reader, writer

    out.rss_before_kb = rss()
    conns = await open_all(scale.connections, opener, out)
    await asyncio.sleep(scale.seconds)
    out.rss_after_kb = rss()
    out.held = sum(not reader.at_eof() for reader, _ in conns)
    out.expected = len(conns)
    gate = asyncio.Semaphore(BATCH)

    async def again(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with gate:
            start = time.perf_counter()
            try:
                writer.write(request)
                status, _ = await asyncio.wait_for(read_response(reader), OPEN_TIMEOUT)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                out.error(f"second request: {type(exc).__name__}")
                return
            if status == 200:
                out.received += 1
                out.latencies_ms.append((time.perf_counter() - start) * 1000)
            else:
                out.error(f"second request: status {status}")

    await asyncio.gather(*(again(r, w) for r, w in conns))
    for _, writer in conns:
        writer.close()
    return out


# --------------------------------------------------------------- WebSocket ---


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One final, masked client frame (RFC 6455 section 5.2); payloads here are short."""
    n = len(payload)
    mask = os.urandom(4)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    else:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    masked = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big") if n else b""
    return head + mask + masked


def ws_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Take every complete frame off the front of `buf`: (opcode, payload); servers do not mask."""
    frames = []
    while len(buf) >= 2:
        n, at = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, at = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, at = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < at + n:
            break
        frames.append((buf[0] & 0x0F, bytes(buf[at : at + n])))
        del buf[: at + n]
    return frames


class WSClient(asyncio.Protocol):
    """One client WebSocket: handshake, then echoes timed against the send stamp in their payload."""

    def __init__(self, path: str, out: Outcome) -> None:
        self.path, self.out = path, out
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.upgraded = self.closed = self.closing = False
        self.since = 0.0  # when the handshake completed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        key = base64.b64encode(os.urandom(16)).decode()
        extra = f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        extra += "Sec-WebSocket-Version: 13\r\n"
        self.transport.write(get_request(self.path, extra))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            head = take_head(self.buf)
            if head is None:
                return
            status, _ = head
            if status != 101:
                self.fail(f"handshake status {status}")
                return
            self.upgraded = True
            self.since = time.monotonic()
            if not self.ready.done():
                self.ready.set_result(None)
        now = time.perf_counter_ns()
        for opcode, payload in ws_frames(self.buf):
            if opcode in (0x1, 0x2):
                sent = int(payload.split(b" ")[1])
                self.out.received += 1
                self.out.latencies_ms.append((now - sent) / 1e6)
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(ws_frame(payload, 0xA))
            elif opcode == 0x8:
                self.out.error("closed by the server")
                self.closed = True

    def fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ValueError(why))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upgraded and not self.closed and not self.closing:
            # Grouped by lifetime in the notes: every socket dropped after the same time points at a timer.
            self.out.error(f"dropped without a close frame {time.monotonic() - self.since:.0f} s after the handshake")
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed during the handshake"))

    def send(self, seq: int) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(ws_frame(b"%d %d" % (seq, time.perf_counter_ns())))

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.closed:
            self.transport.write(ws_frame((1000).to_bytes(2, "big"), 0x8))
            self.transport.close()


async def sample_rss(out: Outcome, rss: Callable[[], int], stop: asyncio.Event) -> None:
    """The highest RSS seen once a second while messages flow (buffers in flight count too)."""
    while not stop.is_set():
        out.rss_after_kb = max(out.rss_after_kb or 0, rss())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def run_ws(scale: Scale, host: str, port: int, path: str, rss: Callable[[], int]) -> Outcome:
    """N WebSockets; each sends one message a second in its own 1/SLOTS slot of the second; all must echo back."""
    out = Outcome(scale.connections)
    loop = asyncio.get_running_loop()

    async def opener(_: int) -> WSClient:
        transport, proto = await loop.create_connection(lambda: WSClient(path + "ws", out), host, port)
        try:
            await proto.ready
        except BaseException:
            transport.close()
            raise
        return proto

    out.rss_before_kb = rss()
    conns: list[WSClient] = await open_all(scale.connections, opener, out)
    out.held = len(conns)
    rounds = max(1, int(scale.seconds))
    out.expected = len(conns) * rounds  # a connection closed early loses the messages it could not send
    slots: list[list[WSClient]] = [conns[i::SLOTS] for i in range(SLOTS)]
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(out, rss, stop))
    start = loop.time() + 0.2
    for tick in range(rounds * SLOTS):
        await asyncio.sleep(max(0.0, start + tick / SLOTS - loop.time()))
        for conn in slots[tick % SLOTS]:
            conn.send(tick // SLOTS)
    deadline = loop.time() + DRAIN_SECONDS
    while out.received < out.expected and loop.time() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await sampler
    out.held -= sum(conn.closed for conn in conns)
    for conn in conns:
        conn.close()
    return out


# --------------------------------------------------------------------- SSE ---


class SSEClient(asyncio.Protocol):
    """One event stream: a chunked (or until-close) body cut into events `data: SEQ SENT`."""

    def __init__(self, request: bytes, out: Outcome, live: list[int]) -> None:
        self.request, self.out, self.live = request, out, live
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.raw, self.text = bytearray(), bytearray()
        self.head = False
        self.chunked = True
        self.want: int | None = None  # bytes of the current chunk still to come, with its CRLF
        self.transport: asyncio.Transport | None = None
        self.next_seq = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.raw += data
        if not self.head:
            head = take_head(self.raw)
            if head is None:
                return
            status, headers = head
            if status != 200:
                self.ready.set_exception(ValueError(f"status {status}"))
                self.close()
                return
            self.head = True
            self.chunked = headers.get("transfer-encoding", "").lower() == "chunked"
            self.live[0] += 1
            self.live[1] = max(self.live[1], self.live[0])
            self.ready.set_result(None)
        if not self.chunked:
            self.events(bytes(self.raw))
            self.raw.clear()
            return
        while True:
            if self.want is None:
                end = self.raw.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(self.raw[:end]).split(b";")[0], 16)
                del self.raw[: end + 2]
                if size == 0:
                    self.finish()
                    return
                self.want = size + 2
            if len(self.raw) < self.want:
                return
            self.events(bytes(self.raw[: self.want - 2]))
            del self.raw[: self.want]
            self.want = None

    def events(self, chunk: bytes) -> None:
        self.text += chunk
        now = time.time()
        while (end := self.text.find(b"\n\n")) >= 0:
            event = bytes(self.text[:end])
            del self.text[: end + 2]
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    seq, sent = line[5:].split()
                    if int(seq) == self.next_seq:  # in order, none skipped: a gap is counted as lost
                        self.next_seq += 1
                        self.out.received += 1
                        if float(sent) >= self.out.steady_since:
                            self.out.latencies_ms.append((now - float(sent)) * 1000)
                    else:
                        self.out.error("event out of order")

    def finish(self) -> None:
        if not self.done.done():
            self.live[0] -= 1
            self.done.set_result(None)
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the response head"))
        elif not self.done.done():
            if self.chunked:
                self.out.error("stream cut before its end")
            self.finish()


async def run_sse(scale: Scale, host: str, port: int, path: str, rss: Callable[[], int]) -> Outcome:
    """N streams of `seconds` events each (phases spread over the second); every event must arrive."""
    out = Outcome(scale.connections)
    loop = asyncio.get_running_loop()
    count = max(1, int(scale.seconds))
    live = [0, 0]  # streams open now, most open at once

    async def opener(i: int) -> SSEClient:
        target = f"{path}sse?count={count}&phase={i / scale.connections:.4f}"
        request = get_request(target, "Accept: text/event-stream\r\n")
        transport, proto = await loop.create_connection(lambda: SSEClient(request, out, live), host, port)
        try:
            await proto.ready
        except BaseException:
            transport.close()
            raise
        return proto

    out.rss_before_kb = rss()
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(out, rss, stop))
    conns: list[SSEClient] = await open_all(scale.connections, opener, out)
    # Delivery is timed once every stream is open: while they are being opened the proxy is also
    # accepting BATCH connections at a time, and that cost (measured: the whole of a p99 over
    # 100 ms on Hypercorn, against about 1 ms after) belongs to the opening, not to the streams.
    out.steady_since = time.time()
    out.expected = len(conns) * count
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.done for c in conns)), count + 1 + DRAIN_SECONDS)
    stop.set()
    await sampler
    out.held = live[1]
    for conn in conns:
        conn.close()
    return out


RUNNERS = {"idle": run_idle, "ws": run_ws, "sse": run_sse}


def measure_side(scale: Scale, url: str, pid: int) -> Outcome:
    """Load one started server (url: http://127.0.0.1:PORT/PATH/) with the row's clients, on a fresh loop."""
    hostport, _, rest = url.removeprefix("http://").partition("/")
    host, _, port = hostport.partition(":")
    path = "/" + rest if rest.endswith("/") or not rest else "/" + rest + "/"
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop

    def rss() -> int:
        return tree_rss_kb(pid)

    async def main() -> Outcome:
        # Warm up with a few connections first, so lazy imports and first-use caches are in the "before" RSS.
        warm = Scale(scale.kind, min(20, scale.connections), 1.0)
        await RUNNERS[scale.kind](warm, host, int(port), path, rss)
        await asyncio.sleep(0.5)
        budget = OPEN_DEADLINE + scale.seconds + DRAIN_SECONDS + 2 * OPEN_TIMEOUT
        cpu, since = tree_cpu_seconds(pid), time.monotonic()
        out: Outcome = await asyncio.wait_for(RUNNERS[scale.kind](scale, host, int(port), path, rss), budget)
        out.cpu_percent = round(100 * (tree_cpu_seconds(pid) - cpu) / (time.monotonic() - since), 1)
        return out

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())
