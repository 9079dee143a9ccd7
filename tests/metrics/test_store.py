"""The supervisor side: workers' snapshots merged, exited workers kept, bad input dropped."""

from __future__ import annotations

from qkhyper.metrics import catalog
from qkhyper.metrics.recorder import ProxyMetrics, Recorder
from qkhyper.metrics.store import MAX_SERIES, MetricsStore, parse

KEY = (catalog.GATEWAY_REQUESTS, "/users", "GET", "2xx")
HIST = (catalog.GATEWAY_DURATION, "/users")
SSE = (catalog.GATEWAY_STREAMS, "sse")


def worker(requests: int, streams: int = 0) -> Recorder:
    recorder = Recorder()
    proxy = ProxyMetrics(recorder)
    for _ in range(requests):
        proxy.request("/users", "GET", 200, 0.002)
    proxy.stream("sse", streams)
    return recorder


def test_two_workers_sum_and_an_exited_one_is_kept() -> None:
    store = MetricsStore()
    one, two = object(), object()
    store.update(one, "gateway", 5, worker(5, streams=1).snapshot())
    store.update(two, "gateway", 3, worker(3, streams=2).snapshot())
    total = store.total()
    assert total.counters[KEY] == 8
    assert total.counters[(catalog.REQUESTS, "gateway")] == 8
    assert total.histograms[HIST][0] == 8  # all in the first bucket
    assert total.gauges[SSE] == 3

    store.update(one, "gateway", 7, worker(7, streams=1).snapshot())  # a later beat replaces the earlier
    store.retire(one)  # it exited
    after = store.total()
    assert after.counters[KEY] == 10  # 7 of the exited worker + 3: never below what was shown
    assert after.counters[(catalog.REQUESTS, "gateway")] == 10
    assert after.histograms[HIST][0] == 10
    assert after.gauges[SSE] == 2  # its open streams ended with it

    replacement = object()
    store.update(replacement, "gateway", 1, worker(1).snapshot())  # a new worker starts from zero
    assert store.total().counters[KEY] == 11


def test_retire_of_an_unknown_worker_and_twice_is_harmless() -> None:
    store = MetricsStore()
    w = object()
    store.retire(w)
    store.update(w, "a", 2, None)
    store.retire(w)
    store.retire(w)
    assert store.total().counters == {(catalog.REQUESTS, "a"): 2}


def test_parse_drops_what_does_not_fit() -> None:
    good = [catalog.GATEWAY_REQUESTS, ["/a", "GET", "2xx"], 2]
    raw = {
        "c": [
            good,
            ["qkhyper_made_up_total", [], 1],  # unknown name
            [catalog.GATEWAY_REQUESTS, ["/a"], 1],  # wrong label count
            [catalog.GATEWAY_REQUESTS, ["/a", "GET", 5], 1],  # a label not a string
            [catalog.GATEWAY_REQUESTS, ["/" + "a" * 200, "GET", "2xx"], 1],  # a label over 200 characters
            [catalog.GATEWAY_REQUESTS, ["/b", "GET", "2xx"], -1],  # a counter below zero
            [catalog.GATEWAY_REQUESTS, ["/c", "GET", "2xx"], float("nan")],
            [catalog.GATEWAY_STREAMS, ["sse"], 1],  # a gauge sent as a counter
            "junk",
            [1, 2],
        ],
        "g": [[catalog.GATEWAY_STREAMS, ["sse"], 1], [catalog.GATEWAY_REQUESTS, ["/a", "GET", "2xx"], 1]],
        "h": [
            [catalog.GATEWAY_DURATION, ["/a"], [1] * (len(catalog.BUCKETS) + 1), 0.5],
            [catalog.GATEWAY_DURATION, ["/b"], [1, 2], 0.5],  # wrong bucket count
            [catalog.GATEWAY_DURATION, ["/c"], [-1] * (len(catalog.BUCKETS) + 1), 0.5],
        ],
    }
    snapshot = parse(raw)
    assert snapshot.counters == {(catalog.GATEWAY_REQUESTS, "/a", "GET", "2xx"): 2}
    assert snapshot.gauges == {(catalog.GATEWAY_STREAMS, "sse"): 1}
    assert list(snapshot.histograms) == [(catalog.GATEWAY_DURATION, "/a")]
    assert parse("nope").counters == {} and parse({"c": "x"}).counters == {}


def test_parse_caps_the_series() -> None:
    entries = [[catalog.GATEWAY_REQUESTS, [f"/r{i}", "GET", "2xx"], 1] for i in range(MAX_SERIES + 50)]
    assert len(parse({"c": entries}).counters) == MAX_SERIES
