"""The exposition as a scraper reads it: parsed back with prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from qkhyper.metrics.collector import SupervisorCollector, exposition, make_registry
from qkhyper.metrics.recorder import ProxyMetrics, Recorder, StaticMetrics
from qkhyper.metrics.store import MetricsStore
from qkhyper.metrics.view import SupervisorSample, WorkerRow


def scrape(sample: SupervisorSample, store: MetricsStore) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of the exposition: name -> {sorted labels: value}."""
    text = exposition(make_registry(SupervisorCollector(lambda: sample, store.total), process=False)).decode()
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return found


SAMPLE = SupervisorSample(
    apps={"users": (1, 2), "orders": (1, 1)},
    states={("users", "ready"): 1, ("users", "starting"): 1, ("orders", "ready"): 1, ("orders", "draining"): 1},
    restarts={("users", "crash"): 2, ("orders", "roll"): 1, ("gone", "crash"): 4},
    workers=[WorkerRow("users", 1, 50e6, 12.5), WorkerRow("orders", 1, None, 3.0)],
    uptime=100.0,
    started=True,
)


def test_supervisor_families() -> None:
    found = scrape(SAMPLE, MetricsStore())
    workers = found["qkhyper_workers"]
    assert workers[(("app", "users"), ("state", "starting"))] == 1
    assert workers[(("app", "users"), ("state", "draining"))] == 0  # zeros are shown, so alerts can see them
    assert workers[(("app", "orders"), ("state", "draining"))] == 1
    restarts = found["qkhyper_worker_restarts_total"]
    assert restarts[(("app", "users"), ("reason", "crash"))] == 2
    assert restarts[(("app", "users"), ("reason", "hang"))] == 0
    assert restarts[(("app", "gone"), ("reason", "crash"))] == 4
    assert found["qkhyper_worker_resident_memory_bytes"] == {(("app", "users"), ("worker", "1")): 50e6}
    assert found["qkhyper_worker_uptime_seconds"][(("app", "orders"), ("worker", "1"))] == 3.0
    assert found["qkhyper_uptime_seconds"] == {(): 100.0}
    assert found["qkhyper_ready"] == {(): 1.0}


def test_worker_families_summed_over_workers() -> None:
    store = MetricsStore()
    for n, pid in ((7, 1), (3, 2)):
        recorder = Recorder()
        proxy = ProxyMetrics(recorder)
        for i in range(n):
            proxy.request("/users", "GET", 200, 0.003 if i % 2 else 0.7)
        proxy.request("/orders", "POST", 502, 0.01)
        proxy.failure("/orders", "connect_failed")
        StaticMetrics(recorder).response(304, 0)
        store.update(pid, "gateway", n + 1, recorder.snapshot())
    store.retire(1)
    found = scrape(SupervisorSample({}, {}, {}), store)
    requests = found["qkhyper_gateway_requests_total"]
    assert requests[(("code", "2xx"), ("method", "GET"), ("route", "/users"))] == 10
    assert requests[(("code", "5xx"), ("method", "POST"), ("route", "/orders"))] == 2
    failures = found["qkhyper_gateway_upstream_failures_total"]
    assert failures == {(("reason", "connect_failed"), ("route", "/orders")): 2}
    assert found["qkhyper_requests_total"] == {(("app", "gateway"),): 12}  # 8 + 4 beats' counts
    assert found["qkhyper_static_not_modified_total"] == {(): 2}
    buckets = found["qkhyper_gateway_request_duration_seconds_bucket"]
    users = {dict(k)["le"]: v for k, v in buckets.items() if dict(k)["route"] == "/users"}
    assert users["0.005"] == 4 and users["0.5"] == 4 and users["1.0"] == 10 and users["+Inf"] == 10  # 4 fast, 6 slow
    assert found["qkhyper_gateway_request_duration_seconds_count"][(("route", "/users"),)] == 10
    total = found["qkhyper_gateway_request_duration_seconds_sum"][(("route", "/users"),)]
    assert abs(total - (6 * 0.7 + 4 * 0.003)) < 1e-9


def test_the_process_collector_describes_the_supervisor_itself() -> None:
    text = exposition(make_registry(SupervisorCollector(lambda: SAMPLE, MetricsStore().total))).decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert "process_resident_memory_bytes" in names
