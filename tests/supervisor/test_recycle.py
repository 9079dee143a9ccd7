"""Worker recycling with real workers: a roll, never a crash, and no failed request with one worker."""

from __future__ import annotations

import re
from pathlib import Path

import psutil
import pytest

from tests.conftest import Qkhyper, free_port, get, write_config
from tests.supervisor.test_signals import Hammer, wait_gone, wait_until

BACKENDS = ["hypercorn", "uvicorn"]
RECYCLED = r"probe: worker (\d+) recycled {reason} \(new (\d+)\)"


def start(project: Path, run_qkhyper: type[Qkhyper], backend: str, **app: object) -> tuple[Qkhyper, int]:
    port = free_port()
    config = write_config(project, [{"name": "probe", "app": "apps.probe:app", "port": port, **app}])
    server = run_qkhyper(["serve", "--backend", backend, "--config", str(config)], project)
    server.wait_ready()
    return server, port


def recycled(server: Qkhyper, reason: str) -> tuple[int, int]:
    match = server.wait_for(RECYCLED.format(reason=reason), timeout=60)
    return int(match.group(1)), int(match.group(2))


def assert_not_a_crash(server: Qkhyper) -> None:
    assert not re.search(r"restarting in|killed by|did not stop", server.output), server.output


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_requests_rolls_the_worker_without_a_failed_request(
    project: Path, run_qkhyper: type[Qkhyper], backend: str
) -> None:
    server, port = start(project, run_qkhyper, backend, max_requests=40)
    [first] = server.pids("probe")
    hammer = Hammer(f"http://127.0.0.1:{port}/scope")
    old, new = recycled(server, "after 40 requests")
    assert old == first
    wait_until(lambda: new in hammer.pids)  # the replacement serves...
    mark = len(hammer.outcomes)
    wait_until(lambda: len(hammer.outcomes) >= mark + 20)
    outcomes = hammer.stop()
    assert set(outcomes) == {200}, [o for o in outcomes if o != 200][:5]  # ...and nothing failed meanwhile
    assert wait_gone([old], 30) == []
    assert_not_a_crash(server)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_lifetime_rolls_the_worker(project: Path, run_qkhyper: type[Qkhyper], backend: str) -> None:
    server, port = start(project, run_qkhyper, backend, max_lifetime=3)
    [first] = server.pids("probe")
    old, new = recycled(server, "after 3 s")
    assert old == first
    wait_until(lambda: get(f"http://127.0.0.1:{port}/scope").json()["pid"] == new)
    assert_not_a_crash(server)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_rss_mb_rolls_a_worker_that_grew(project: Path, run_qkhyper: type[Qkhyper], backend: str) -> None:
    server, port = start(project, run_qkhyper, backend, max_rss_mb=300)
    [first] = server.pids("probe")
    assert psutil.Process(first).memory_info().rss < 250 * 1024 * 1024  # so only the growth can pass the limit
    assert get(f"http://127.0.0.1:{port}/grow?mb=250").json()["pid"] == first
    old, new = recycled(server, r"at \d+ MB RSS")
    assert old == first
    wait_until(lambda: get(f"http://127.0.0.1:{port}/scope").json()["pid"] == new)
    assert_not_a_crash(server)


def test_hypercorns_own_max_requests_is_refused(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    from tests.conftest import run_cli

    config = write_config(project, [{"name": "probe", "app": "apps.probe:app"}], top="max_requests = 1000")
    result = run_cli(["serve", "--config", str(config)], project)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "qkhyper: error: 'max_requests' is managed by qkhyper: set `max_requests` in [qkhyper] "
        "or [[qkhyper.apps]] (qkhyper recycles workers by a roll)"
    )
