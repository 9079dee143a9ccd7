"""Recycling and watchdog keys: per app and global, checked, and carried to each unit of the plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from qkhyper.config import load_settings
from qkhyper.config.model import WorkerLimits
from qkhyper.config.workers import strictest, worker_limits
from qkhyper.errors import ConfigError
from qkhyper.supervisor.plan import Selection, make_plan

APPS = """
[[qkhyper.apps]]
name = "users"
app = "svc.users:app"
port = 9101
{users}
[[qkhyper.apps]]
name = "orders"
app = "svc.orders:app"
port = 9102
"""


def load(folder: Path, top: str = "", users: str = "", env: dict[str, str] | None = None):
    path = folder / "hypercorn.toml"
    path.write_text(top + APPS.format(users=users))
    return load_settings(str(path), env=env or {})


def test_defaults_are_off_but_the_watchdog(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert worker_limits(settings.qkhyper, settings.app("users")) == WorkerLimits(worker_timeout=60.0)
    assert WorkerLimits().max_requests == WorkerLimits().max_rss_mb == 0


def test_the_apps_own_value_wins(tmp_path: Path) -> None:
    top = "[qkhyper]\nmax_requests = 1000\nmax_requests_jitter = 50\nmax_rss_mb = 512\nworker_timeout = 30\n"
    settings = load(tmp_path, top, users="max_requests = 0\nmax_lifetime = 3600\nworker_timeout = 0\n")
    qk = settings.qkhyper
    assert worker_limits(qk, settings.app("users")) == WorkerLimits(0, 50, 512, 3600.0, 0.0)
    assert worker_limits(qk, settings.app("orders")) == WorkerLimits(1000, 50, 512, 0.0, 30.0)
    assert worker_limits(qk) == WorkerLimits(1000, 50, 512, 0.0, 30.0)  # gateway and static


def test_environment_sets_the_global_keys(tmp_path: Path) -> None:
    settings = load(tmp_path, env={"QKHYPER_MAX_REQUESTS": "200", "QKHYPER_WORKER_TIMEOUT": "5"})
    assert worker_limits(settings.qkhyper) == WorkerLimits(max_requests=200, worker_timeout=5.0)


def test_every_unit_and_worker_is_told(tmp_path: Path) -> None:
    settings = load(tmp_path, "[qkhyper]\nworker_timeout = 2\n", users="max_requests = 10\n")
    users, orders = make_plan(settings).units
    assert users.limits == WorkerLimits(max_requests=10, worker_timeout=2.0)
    assert users.child.beat_interval == orders.child.beat_interval == 0.5
    assert users.child.request_limit == 0  # drawn per worker when it is spawned


def test_aio_keeps_every_apps_limit(tmp_path: Path) -> None:
    settings = load(tmp_path, "[qkhyper]\nmax_rss_mb = 900\n", users="max_requests = 10\nmax_rss_mb = 300\n")
    [unit] = make_plan(settings, Selection(aio=True)).units
    assert unit.limits == WorkerLimits(max_requests=10, max_rss_mb=300, worker_timeout=60.0)


def test_strictest_is_the_smallest_limit_set() -> None:
    assert strictest([WorkerLimits(worker_timeout=0), WorkerLimits(worker_timeout=0)]) == WorkerLimits(worker_timeout=0)
    assert strictest(
        [WorkerLimits(max_requests=500, max_requests_jitter=9, worker_timeout=0), WorkerLimits(max_lifetime=60)]
    ) == WorkerLimits(max_requests=500, max_requests_jitter=9, max_lifetime=60.0, worker_timeout=60.0)


@pytest.mark.parametrize(
    ("top", "users", "env", "message"),
    [
        ("[qkhyper]\nmax_requests = -1\n", "", {}, "qkhyper.max_requests must be 0 (off) or positive, got -1"),
        ("", "max_rss_mb = -5\n", {}, "qkhyper.apps[0].max_rss_mb must be 0 (off) or positive, got -5"),
        ("", "max_lifetime = -1.5\n", {}, "qkhyper.apps[0].max_lifetime must be 0 (off) or positive, got -1.5"),
        ("[qkhyper]\nmax_lifetime = inf\n", "", {}, "qkhyper.max_lifetime must be 0 (off) or positive, got inf"),
        ("", "max_requests_jitter = -3\n", {}, "qkhyper.apps[0].max_requests_jitter must be 0 (off) or positive"),
        (
            "[qkhyper]\nworker_timeout = 0.5\n",
            "",
            {},
            "qkhyper.worker_timeout must be 0 (off) or at least 1 s, got 0.5",
        ),
        ("", "max_requests = 1.5\n", {}, "qkhyper.apps[0].max_requests must be an integer, got 1.5"),
        ("", "worker_timeout = 'soon'\n", {}, "qkhyper.apps[0].worker_timeout must be a number, got 'soon'"),
        ("", "", {"QKHYPER_MAX_RSS_MB": "lots"}, "QKHYPER_MAX_RSS_MB must be an integer, got 'lots'"),
        (
            "[qkhyper]\nmax_request = 5\n",
            "",
            {},
            "unknown key 'max_request' in [qkhyper] (did you mean 'max_requests'?)",
        ),
        (
            "max_requests = 1000\n",
            "",
            {},
            "'max_requests' is managed by qkhyper: set `max_requests` in [qkhyper] or [[qkhyper.apps]]",
        ),
        (
            "max_requests_jitter = 50\n",
            "",
            {},
            "'max_requests_jitter' is managed by qkhyper: set `max_requests_jitter` in [qkhyper]",
        ),
        (
            "limit_max_requests = 1000\n",
            "",
            {},
            "'limit_max_requests' is managed by qkhyper: uvicorn's setting: set `max_requests`",
        ),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, top: str, users: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, top, users, env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
