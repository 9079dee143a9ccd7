"""The worker side: plain dict increments, sent with each heartbeat as a snapshot.

A request costs a dict lookup and an add per series it touches, and a
`bisect` for the latency histogram; there are no locks (one event loop) and
no prometheus-client objects in a worker. With metrics off, the builtin apps
get `None` instead of a recorder and check it once per request.

Snapshot format (JSON, inside the beat message, see `supervisor/messages.py`)::

    {"c": [[name, [label values...], value], ...],          counters
     "g": [[name, [label values...], value], ...],          gauges
     "h": [[name, [label values...], [count per bucket..., count over the last], sum], ...]}

Bucket counts are per bucket (not cumulative), one per `catalog.BUCKETS` bound
plus one for +Inf. Label names are in `catalog.py`, not on the wire.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from . import catalog

Key = tuple[str, ...]  # (metric name, label value, ...)
# Called at each snapshot for values read from live objects (the pool's connections):
# ("c", key, total so far) for a counter, ("g", key, value now) for a gauge.
Probe = Callable[[], Iterable[tuple[str, Key, float]]]

# Methods counted by name; anything else is "other", so a client cannot grow the series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")


class Recorder:
    """One worker's counters, gauges and histograms."""

    def __init__(self, buckets: tuple[float, ...] = catalog.BUCKETS) -> None:
        self.buckets = buckets
        self.counters: dict[Key, float] = {}
        self.gauges: dict[Key, float] = {}
        self.histograms: dict[Key, list[float]] = {}  # bucket counts, then the sum as the last item
        self.probes: list[Probe] = []

    def inc(self, key: Key, amount: float = 1) -> None:
        counters = self.counters
        counters[key] = counters.get(key, 0) + amount

    def add(self, key: Key, delta: float) -> None:
        gauges = self.gauges
        gauges[key] = gauges.get(key, 0) + delta

    def observe(self, key: Key, value: float) -> None:
        cells = self.histograms.get(key)
        if cells is None:
            cells = self.histograms[key] = [0.0] * (len(self.buckets) + 2)
        cells[bisect_left(self.buckets, value)] += 1  # le is "less or equal": the first bound >= value
        cells[-1] += value

    def snapshot(self) -> dict[str, Any]:
        counters = dict(self.counters)
        gauges = dict(self.gauges)
        for probe in self.probes:
            for kind, key, value in probe():
                target = counters if kind == "c" else gauges
                target[key] = target.get(key, 0) + value
        return {
            "c": [[key[0], list(key[1:]), value] for key, value in counters.items()],
            "g": [[key[0], list(key[1:]), value] for key, value in gauges.items()],
            "h": [[key[0], list(key[1:]), cells[:-1], cells[-1]] for key, cells in self.histograms.items()],
        }


def status_class(status: int) -> str:
    """`404` -> `"4xx"`; 0 (no answer was sent, the request was cancelled) -> `"none"`."""
    index = status // 100
    return _CLASSES[index] if 0 < index < len(_CLASSES) else "none"


class ProxyMetrics:
    """What the proxy core counts (gateway, and static's API prefix)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "other"
        self.recorder.inc((catalog.GATEWAY_REQUESTS, route, method, status_class(status)))
        self.recorder.observe((catalog.GATEWAY_DURATION, route), seconds)

    def unrouted(self, route: str, method: str, status: int) -> None:
        """A request answered before any route took it (404 for no route, 400 refused): no latency."""
        method = method if method in _METHODS else "other"
        self.recorder.inc((catalog.GATEWAY_REQUESTS, route, method, status_class(status)))

    def failure(self, route: str, reason: str) -> None:
        self.recorder.inc((catalog.GATEWAY_FAILURES, route, reason))

    def stream(self, kind: str, delta: int) -> None:
        """A WebSocket or SSE response opened (+1) or ended (-1); kind is "websocket" or "sse"."""
        self.recorder.add((catalog.GATEWAY_STREAMS, kind), delta)

    def watch_pool(self, stats: Callable[[], tuple[int, int, int, int]]) -> None:
        """Report `stats()` = (idle, in use, opened, reused) of a pool at every snapshot."""

        def probe() -> list[tuple[str, Key, float]]:
            idle, in_use, opened, reused = stats()
            return [
                ("g", (catalog.GATEWAY_POOL, "idle"), idle),
                ("g", (catalog.GATEWAY_POOL, "in_use"), in_use),
                ("c", (catalog.GATEWAY_POOL_OPENED,), opened),
                ("c", (catalog.GATEWAY_POOL_REUSED,), reused),
            ]

        self.recorder.probes.append(probe)


class StaticMetrics:
    """What the static server counts."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def response(self, status: int, sent: int) -> None:
        counters = self.recorder.counters
        key = (catalog.STATIC_REQUESTS, str(status))
        counters[key] = counters.get(key, 0) + 1
        if sent:
            self.recorder.inc((catalog.STATIC_BYTES,), sent)
        if status == 304:
            self.recorder.inc((catalog.STATIC_NOT_MODIFIED,))

    def cache(self, hit: bool) -> None:
        self.recorder.inc((catalog.STATIC_CACHE_HITS,) if hit else (catalog.STATIC_CACHE_MISSES,))
