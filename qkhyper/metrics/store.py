"""The supervisor side of worker metrics: each worker's last snapshot, and what exited workers counted.

A worker's counters start at zero with the worker, so a sum over the workers
alive now would drop whenever one exits. When a worker's report pipe closes
(it exited), its last counters and histograms are added to a total the store
keeps; its gauges (open streams, pooled connections) end with it. Every sum
the store hands out is therefore monotonic for counters.

Snapshots come from a pipe a user app could in principle write to, so
parsing is tolerant: anything malformed, unknown (`catalog.WORKER_METRICS`)
or with the wrong number of labels is dropped, and a snapshot is capped.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from . import catalog
from .recorder import Key

# Series one snapshot may carry; beyond it the rest is dropped (routes x methods x classes stays far below).
MAX_SERIES = 5000


@dataclass
class Snapshot:
    counters: dict[Key, float] = field(default_factory=dict)
    gauges: dict[Key, float] = field(default_factory=dict)
    histograms: dict[Key, list[float]] = field(default_factory=dict)  # per-bucket counts, then the sum

    def add(self, other: Snapshot, *, gauges: bool = True) -> None:
        for key, value in other.counters.items():
            self.counters[key] = self.counters.get(key, 0) + value
        if gauges:
            for key, value in other.gauges.items():
                self.gauges[key] = self.gauges.get(key, 0) + value
        for key, cells in other.histograms.items():
            mine = self.histograms.get(key)
            if mine is None or len(mine) != len(cells):
                self.histograms[key] = list(cells)
            else:
                self.histograms[key] = [a + b for a, b in zip(mine, cells, strict=True)]


def parse(raw: object, buckets: int = len(catalog.BUCKETS)) -> Snapshot:
    """A snapshot from a beat's `metrics` value (recorder.py's format); what does not fit is dropped."""
    snapshot = Snapshot()
    if not isinstance(raw, dict):
        return snapshot
    budget = MAX_SERIES
    for kind, target in (("c", snapshot.counters), ("g", snapshot.gauges)):
        for entry in _entries(raw.get(kind), 3)[: max(budget, 0)]:
            key, value = _key(entry[0], entry[1], "counter" if kind == "c" else "gauge"), entry[2]
            if key is not None and _number(value) and (kind == "g" or value >= 0):
                target[key] = float(value)
        budget -= len(target)
    for entry in _entries(raw.get("h"), 4)[: max(budget, 0)]:
        key, cells, total = _key(entry[0], entry[1], "histogram"), entry[2], entry[3]
        if key is None or not isinstance(cells, list) or len(cells) != buckets + 1 or not _number(total):
            continue
        if all(_number(c) and c >= 0 for c in cells):
            snapshot.histograms[key] = [float(c) for c in cells] + [float(total)]
    return snapshot


def _entries(value: object, size: int) -> list[list[Any]]:
    if not isinstance(value, list):
        return []
    return [e for e in value if isinstance(e, list) and len(e) == size]


def _key(name: object, labels: object, kind: str) -> Key | None:
    """The series key, if `name` is a known metric of `kind` with that many labels."""
    metric = catalog.WORKER_METRICS.get(name) if isinstance(name, str) else None
    if metric is None or metric.kind != kind:
        return None
    if not isinstance(labels, list) or len(labels) != len(metric.labels):
        return None
    if not all(isinstance(label, str) and len(label) <= 200 for label in labels):
        return None
    return (str(name), *labels)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class MetricsStore:
    """The last snapshot of every live worker, plus the total of those that exited."""

    def __init__(self) -> None:
        self._live: dict[Hashable, Snapshot] = {}
        self._exited = Snapshot()

    def update(self, worker: Hashable, app: str, requests: int, raw: object) -> None:
        """A beat arrived from `worker` (of `app`) with its request count and metrics (None: none sent)."""
        snapshot = parse(raw) if raw is not None else Snapshot()
        snapshot.counters[(catalog.REQUESTS, app)] = float(max(requests, 0))
        self._live[worker] = snapshot

    def retire(self, worker: Hashable) -> None:
        """`worker` exited: its counters join the total, its gauges end."""
        last = self._live.pop(worker, None)
        if last is not None:
            self._exited.add(last, gauges=False)

    def total(self) -> Snapshot:
        """Everything summed: exited workers' counters and histograms, and every live worker's last snapshot."""
        total = Snapshot()
        total.add(self._exited)
        for snapshot in self._live.values():
            total.add(snapshot)
        return total
