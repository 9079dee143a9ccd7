"""Every metric qkhyper exposes: its name, type, help and label names, written once.

Workers send label *values* only; the supervisor reads the names here, and
drops any sample whose name is not in this table or whose label count does
not match, so a worker can never invent a series.
"""

from __future__ import annotations

from dataclasses import dataclass

# Seconds; the upper bounds of the latency histogram (+Inf is implied). From 5 ms to
# the default read_timeout of 60 s, roughly x2.5 apart, like prometheus-client's defaults.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class Metric:
    kind: str  # "counter" | "gauge" | "histogram"
    help: str
    labels: tuple[str, ...] = ()


# Names as exposed; a counter's family name is without its `_total` (prometheus-client adds it back).
REQUESTS = "qkhyper_requests_total"
GATEWAY_REQUESTS = "qkhyper_gateway_requests_total"
GATEWAY_DURATION = "qkhyper_gateway_request_duration_seconds"
GATEWAY_FAILURES = "qkhyper_gateway_upstream_failures_total"
GATEWAY_POOL = "qkhyper_gateway_pool_connections"
GATEWAY_POOL_OPENED = "qkhyper_gateway_pool_connections_opened_total"
GATEWAY_POOL_REUSED = "qkhyper_gateway_pool_connections_reused_total"
GATEWAY_STREAMS = "qkhyper_gateway_open_streams"
STATIC_REQUESTS = "qkhyper_static_requests_total"
STATIC_BYTES = "qkhyper_static_sent_bytes_total"
STATIC_CACHE_HITS = "qkhyper_static_cache_hits_total"
STATIC_CACHE_MISSES = "qkhyper_static_cache_misses_total"
STATIC_NOT_MODIFIED = "qkhyper_static_not_modified_total"

# What workers may send (their recorders, plus the request count every beat carries).
WORKER_METRICS: dict[str, Metric] = {
    REQUESTS: Metric("counter", "HTTP requests and WebSocket connections the app's workers served", ("app",)),
    GATEWAY_REQUESTS: Metric(
        "counter", "Requests the proxy answered, by route, method and status class", ("route", "method", "code")
    ),
    GATEWAY_DURATION: Metric("histogram", "Time from request to the end of the proxied response", ("route",)),
    GATEWAY_FAILURES: Metric(
        "counter", "Proxied requests that failed on the upstream side, by reason", ("route", "reason")
    ),
    GATEWAY_POOL: Metric("gauge", "Upstream connections, idle in the pool or in use", ("state",)),
    GATEWAY_POOL_OPENED: Metric("counter", "Upstream connections opened"),
    GATEWAY_POOL_REUSED: Metric("counter", "Requests sent on a pooled keep-alive connection"),
    GATEWAY_STREAMS: Metric("gauge", "Open WebSockets and SSE (text/event-stream) responses", ("kind",)),
    STATIC_REQUESTS: Metric("counter", "Static file requests, by status", ("code",)),
    STATIC_BYTES: Metric("counter", "Body bytes of static responses"),
    STATIC_CACHE_HITS: Metric("counter", "Static requests answered from the resolved-path cache"),
    STATIC_CACHE_MISSES: Metric("counter", "Static requests that had to resolve the path"),
    STATIC_NOT_MODIFIED: Metric("counter", "Static requests answered 304 Not Modified"),
}

# What the supervisor knows itself.
SUPERVISOR_METRICS: dict[str, Metric] = {
    "qkhyper_workers": Metric(
        "gauge", "Worker processes by app and state (starting, ready, draining)", ("app", "state")
    ),
    "qkhyper_worker_restarts_total": Metric(
        "counter", "Workers replaced, by reason (crash, hang, recycle, roll)", ("app", "reason")
    ),
    "qkhyper_worker_resident_memory_bytes": Metric(
        "gauge", "Resident memory of each serving worker (worker: its number in the app)", ("app", "worker")
    ),
    "qkhyper_worker_uptime_seconds": Metric(
        "gauge", "Seconds since each serving worker was started", ("app", "worker")
    ),
    "qkhyper_uptime_seconds": Metric("gauge", "Seconds since the supervisor started"),
    "qkhyper_ready": Metric("gauge", "1 once the supervisor printed its ready table and is not draining"),
}

RESTART_REASONS = ("crash", "hang", "recycle", "roll")
WORKER_STATES = ("starting", "ready", "draining")
