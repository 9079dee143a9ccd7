"""Reading a running qkhyper's metrics endpoint from a test: parsed samples, and polling with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def scrape(port: int) -> Samples:
    """Every sample of `/metrics`: name -> {labels: value}."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get(name, {}).get(frozenset(labels.items()), 0.0)


def wait_for(port: int, check: Callable[[Samples], bool], timeout: float = 20.0) -> Samples:
    """Scrape until `check` holds (beats bring worker counts at least once a second), or fail with the last one."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never matched; last scrape: {samples}")
        time.sleep(0.1)  # a poll interval, not a wait for something: the deadline bounds it


def get_json(port: int, path: str) -> tuple[int, object]:
    response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)
    return response.status_code, response.json()
