"""The worker side: what a request costs in the recorder, and the snapshot the beat carries."""

from __future__ import annotations

import json

from qkhyper.metrics import catalog
from qkhyper.metrics.recorder import ProxyMetrics, Recorder, StaticMetrics, status_class
from qkhyper.supervisor.messages import Beat, decode, encode


def test_counts_by_route_method_and_class() -> None:
    recorder = Recorder()
    proxy = ProxyMetrics(recorder)
    for _ in range(3):
        proxy.request("/users", "GET", 200, 0.003)
    proxy.request("/users", "GET", 204, 0.003)
    proxy.request("/users", "BREW", 503, 0.2)
    proxy.unrouted("unmatched", "GET", 404)
    assert recorder.counters == {
        (catalog.GATEWAY_REQUESTS, "/users", "GET", "2xx"): 4,
        (catalog.GATEWAY_REQUESTS, "/users", "other", "5xx"): 1,
        (catalog.GATEWAY_REQUESTS, "unmatched", "GET", "4xx"): 1,
    }


def test_status_classes() -> None:
    assert [status_class(s) for s in (0, 101, 200, 299, 302, 404, 499, 504, 600, 999)] == [
        "none",
        "1xx",
        "2xx",
        "2xx",
        "3xx",
        "4xx",
        "4xx",
        "5xx",
        "none",
        "none",
    ]


def test_histogram_buckets_are_less_or_equal() -> None:
    recorder = Recorder(buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        recorder.observe(("h",), value)
    # 0.05 and 0.1 in le=0.1; 0.5 and 1.0 in le=1; 7 over the last bound; then the sum
    assert recorder.histograms[("h",)] == [2, 2, 1, 8.65]


def test_gauges_go_up_and_down() -> None:
    recorder = Recorder()
    proxy = ProxyMetrics(recorder)
    proxy.stream("sse", 1)
    proxy.stream("sse", 1)
    proxy.stream("sse", -1)
    assert recorder.gauges == {(catalog.GATEWAY_STREAMS, "sse"): 1}


def test_static_counts() -> None:
    recorder = Recorder()
    static = StaticMetrics(recorder)
    static.response(200, 10)
    static.response(304, 0)
    static.response(404, 22)
    static.cache(True)
    static.cache(False)
    static.cache(False)
    c = recorder.counters
    assert c[(catalog.STATIC_REQUESTS, "200")] == 1 and c[(catalog.STATIC_REQUESTS, "304")] == 1
    assert c[(catalog.STATIC_BYTES,)] == 32
    assert c[(catalog.STATIC_NOT_MODIFIED,)] == 1
    assert (c[(catalog.STATIC_CACHE_HITS,)], c[(catalog.STATIC_CACHE_MISSES,)]) == (1, 2)


def test_snapshot_format_and_pool_probe() -> None:
    recorder = Recorder(buckets=(0.1,))
    proxy = ProxyMetrics(recorder)
    proxy.request("/a", "POST", 201, 0.05)
    proxy.watch_pool(lambda: (2, 1, 5, 9))
    snapshot = recorder.snapshot()
    assert snapshot == {
        "c": [
            [catalog.GATEWAY_REQUESTS, ["/a", "POST", "2xx"], 1],
            [catalog.GATEWAY_POOL_OPENED, [], 5],
            [catalog.GATEWAY_POOL_REUSED, [], 9],
        ],
        "g": [[catalog.GATEWAY_POOL, ["idle"], 2], [catalog.GATEWAY_POOL, ["in_use"], 1]],
        "h": [[catalog.GATEWAY_DURATION, ["/a"], [1, 0], 0.05]],
    }
    json.dumps(snapshot)  # it travels as JSON


def test_beat_carries_the_snapshot_and_decoding_is_tolerant() -> None:
    recorder = Recorder()
    ProxyMetrics(recorder).request("/a", "GET", 200, 0.01)
    beat = Beat(12, recorder.snapshot())
    assert decode(encode(beat)) == beat
    assert decode(encode(Beat(3))) == Beat(3)
    assert decode(b'{"beat": 4, "metrics": [1, 2]}') == Beat(4)  # not an object: ignored, the beat kept
    assert decode(b'{"beat": 4, "metrics": "x"}') == Beat(4)
