"""What the metrics and health endpoints read of a running supervisor, taken in one pass.

`sample` is the only code that looks inside `Supervisor` and its slots; the
rest of the package works on the plain `SupervisorSample` it returns, so the
exposition and the health decisions are tested without processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..supervisor.slot import Slot
from ..supervisor.status import worker_state

_MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A serving worker: its app, its number in the app (stable across restarts), memory and age."""

    app: str
    number: int
    rss_bytes: float | None
    uptime: float


@dataclass(frozen=True)
class SupervisorSample:
    apps: dict[str, tuple[int, int]]  # app -> (ready workers, slots)
    states: dict[tuple[str, str], int]  # (app, state) -> worker processes
    restarts: dict[tuple[str, str], int]  # (app, reason) -> total
    workers: list[WorkerRow] = field(default_factory=list)
    uptime: float = 0.0
    started: bool = False  # the ready table was printed
    draining: bool = False


class SupervisorLike(Protocol):
    """The parts of `supervisor.run.Supervisor` read here."""

    slots: dict[str, list[Slot]]
    numbers: dict[Slot, int]
    retiring: list[Slot]
    ready: bool
    draining: bool


class RestartTotals:
    """Restarts per (app, reason), kept when a slot goes away (SIGTTOU), so the counter never drops."""

    def __init__(self) -> None:
        self._seen: dict[Slot, dict[str, int]] = {}
        self._gone: dict[tuple[str, str], int] = {}

    def count(self, slots: Sequence[Slot]) -> dict[tuple[str, str], int]:
        present = set(slots)
        for slot in [s for s in self._seen if s not in present]:
            for reason, n in self._seen.pop(slot).items():
                key = (slot.label, reason)
                self._gone[key] = self._gone.get(key, 0) + n
        totals = dict(self._gone)
        for slot in slots:
            self._seen[slot] = dict(slot.restarts)
            for reason, n in slot.restarts.items():
                totals[(slot.label, reason)] = totals.get((slot.label, reason), 0) + n
        return totals


def sample(sup: SupervisorLike, totals: RestartTotals, now: float, started_at: float) -> SupervisorSample:
    """Read `sup` at trio time `now`."""
    apps: dict[str, tuple[int, int]] = {}
    states: dict[tuple[str, str], int] = {}
    rows: list[WorkerRow] = []
    for label, group in sup.slots.items():
        serving = [s for s in group if s.worker is not None and s.worker.returncode is None]
        apps[label] = (len(serving), len(group))
        for slot in group:
            _count_states(states, slot, sup.draining)
        for slot in serving:
            assert slot.worker is not None
            rss = slot.worker.rss_mb()
            number = sup.numbers.get(slot, 0)
            rows.append(WorkerRow(label, number, None if rss is None else rss * _MB, now - slot.worker.started_at))
    for slot in sup.retiring:
        _count_states(states, slot, True)
    every = [s for group in sup.slots.values() for s in group] + list(sup.retiring)
    return SupervisorSample(
        apps, states, totals.count(every), rows, now - started_at, sup.ready and not sup.draining, sup.draining
    )


def _count_states(states: dict[tuple[str, str], int], slot: Slot, draining: bool) -> None:
    for worker in slot.live:
        if worker.returncode is not None:
            continue
        state = worker_state(worker is slot.worker, worker.heartbeat.is_ready, draining)
        states[(slot.label, state)] = states.get((slot.label, state), 0) + 1
