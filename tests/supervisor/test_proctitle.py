"""Process titles of real processes, read from /proc/PID/cmdline as `ps` reads them."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from qkhyper.proctitle import set_title
from tests.conftest import Qkhyper, free_port, write_config


def title(pid: int) -> str:
    """What `ps -o args` shows: setproctitle writes the title over argv, padded with NUL bytes."""
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return cmdline.read().rstrip(b"\0").replace(b"\0", b" ").decode()


def test_serve_titles_the_supervisor_and_numbers_each_apps_workers(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config = write_config(
        project,
        [
            {"name": "users", "app": "apps.envprobe:app", "workers": 2},
            {"name": "orders", "app": "apps.envprobe:other"},
        ],
    )
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    assert title(server.proc.pid) == f"qkhyper: supervisor serve {config}"
    assert sorted(title(pid) for pid in server.pids("users")) == ["qkhyper: users worker 1", "qkhyper: users worker 2"]
    [orders] = server.pids("orders")
    assert title(orders) == "qkhyper: orders worker 1"
    # A roll replaces each worker in its slot: the replacement carries the slot's number.
    server.signal(signal.SIGHUP)
    done = server.wait_for(r"rolling restart done: users ([\d, ]+); orders (\d+)")
    users = [int(pid) for pid in done.group(1).split(", ")]
    assert sorted(title(pid) for pid in users) == ["qkhyper: users worker 1", "qkhyper: users worker 2"]
    assert title(int(done.group(2))) == "qkhyper: orders worker 1"


@pytest.mark.parametrize("command", ["gateway", "static"])
def test_gateway_and_static_workers_are_titled_too(project: Path, run_qkhyper: type[Qkhyper], command: str) -> None:
    (project / "static").mkdir()
    (project / "static" / "index.html").write_text("<p>home</p>")
    config = write_config(project, [{"name": "users", "app": "apps.probe:app"}])
    args = [command, "--config", str(config), "--port", str(free_port()), "--workers", "2"]
    server = run_qkhyper(args, project)
    server.wait_ready()
    assert title(server.proc.pid) == f"qkhyper: supervisor {command} {config}"
    expected = [f"qkhyper: {command} worker 1", f"qkhyper: {command} worker 2"]
    assert sorted(title(pid) for pid in server.pids(command)) == expected


def test_a_title_that_cannot_be_set_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    import setproctitle

    def broken(title: str) -> None:
        raise OSError("no argv to write over")

    monkeypatch.setattr(setproctitle, "setproctitle", broken)
    assert set_title("qkhyper: supervisor serve x") == "OSError: no argv to write over"
