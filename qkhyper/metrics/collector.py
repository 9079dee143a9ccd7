"""The exposition: prometheus-client families built at scrape time from a sample and the store.

One `CollectorRegistry` per supervisor holds this collector and
prometheus-client's `ProcessCollector` (the supervisor's own CPU, memory,
open files); nothing is registered globally.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from . import catalog
from .catalog import Metric as Spec
from .store import Snapshot
from .view import SupervisorSample

Scalar = CounterMetricFamily | GaugeMetricFamily
Family = Scalar | HistogramMetricFamily


def _scalar(name: str, spec: Spec) -> Scalar:
    if spec.kind == "counter":
        return CounterMetricFamily(name.removesuffix("_total"), spec.help, labels=spec.labels)
    return GaugeMetricFamily(name, spec.help, labels=spec.labels)


def supervisor_families(sample: SupervisorSample) -> list[Family]:
    fams = {name: _scalar(name, spec) for name, spec in catalog.SUPERVISOR_METRICS.items()}
    workers = fams["qkhyper_workers"]
    for app in sample.apps:
        for state in catalog.WORKER_STATES:  # every state, 0 included: a series that vanishes cannot alert
            workers.add_metric([app, state], sample.states.get((app, state), 0))
    restarts = fams["qkhyper_worker_restarts_total"]
    for app in sample.apps:
        for reason in catalog.RESTART_REASONS:
            restarts.add_metric([app, reason], sample.restarts.get((app, reason), 0))
    for (app, reason), n in sample.restarts.items():
        if app not in sample.apps:  # an app dropped from the plan: its count stays visible
            restarts.add_metric([app, reason], n)
    for row in sample.workers:
        if row.rss_bytes is not None:
            fams["qkhyper_worker_resident_memory_bytes"].add_metric([row.app, str(row.number)], row.rss_bytes)
        fams["qkhyper_worker_uptime_seconds"].add_metric([row.app, str(row.number)], row.uptime)
    fams["qkhyper_uptime_seconds"].add_metric([], sample.uptime)
    fams["qkhyper_ready"].add_metric([], 1 if sample.started else 0)
    return list(fams.values())


def worker_families(total: Snapshot, buckets: tuple[float, ...] = catalog.BUCKETS) -> list[Family]:
    """The workers' series, summed (the store checked every name and label count against the catalog)."""
    scalars: dict[str, Scalar] = {}
    for series in (total.counters, total.gauges):
        for key, value in sorted(series.items()):
            name = key[0]
            if name not in scalars:
                scalars[name] = _scalar(name, catalog.WORKER_METRICS[name])
            scalars[name].add_metric(list(key[1:]), value)
    histograms: dict[str, HistogramMetricFamily] = {}
    bounds = [*(repr(float(b)) for b in buckets), "+Inf"]
    for key, cells in sorted(total.histograms.items()):
        name = key[0]
        if name not in histograms:
            spec = catalog.WORKER_METRICS[name]
            histograms[name] = HistogramMetricFamily(name, spec.help, labels=spec.labels)
        running = 0.0
        cumulative = []
        for bound, count in zip(bounds, cells[:-1], strict=True):
            running += count
            cumulative.append((bound, running))
        histograms[name].add_metric(list(key[1:]), cumulative, cells[-1])
    return [*scalars.values(), *histograms.values()]


class SupervisorCollector(Collector):
    """Yields the supervisor's families and its workers' at every scrape."""

    def __init__(self, sample: Callable[[], SupervisorSample], total: Callable[[], Snapshot]) -> None:
        self.sample = sample
        self.total = total

    def collect(self) -> Iterator[Metric]:
        yield from supervisor_families(self.sample())
        yield from worker_families(self.total())


def make_registry(collector: Collector, *, process: bool = True) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if process:
        ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
