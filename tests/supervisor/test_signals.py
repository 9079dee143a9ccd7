"""Signals, crashes and orphans, sent to a real `qkhyper serve`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import Qkhyper, clean_env, free_port, get, run_cli, write_config


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(check: Callable[[], bool], deadline: float = 30.0) -> None:
    """Poll `check` until it holds; fail at the deadline instead of hanging."""
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, f"not true after {deadline} s"
        time.sleep(0.05)


def wait_gone(pids: list[int], deadline: float) -> list[int]:
    end = time.monotonic() + deadline
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


class Hammer:
    """A client loop of fresh-connection requests, recording every outcome."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.outcomes: list[object] = []
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = httpx.get(self.url, headers={"Connection": "close"}, timeout=30)
                self.outcomes.append(response.status_code)
                self.pids.add(response.json()["pid"])
            except httpx.HTTPError as exc:
                self.outcomes.append(repr(exc))

    def stop(self) -> list[object]:
        self._stop.set()
        self._thread.join(60)
        return self.outcomes


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_rolls_workers_without_failed_requests(
    project: Path, run_qkhyper: type[Qkhyper], backend: str, workers: int
) -> None:
    port = free_port()
    config = write_config(project, [{"name": "probe", "app": "apps.probe:app", "port": port, "workers": workers}])
    server = run_qkhyper(["serve", "--backend", backend, "--config", str(config)], project)
    server.wait_ready()
    old = server.pids("probe")
    assert len(old) == workers
    hammer = Hammer(f"http://127.0.0.1:{port}/scope")
    wait_until(lambda: len(hammer.outcomes) >= 20)
    server.signal(signal.SIGHUP)
    server.wait_for("rolling restart done")
    mark = len(hammer.outcomes)
    wait_until(lambda: len(hammer.outcomes) >= mark + 20)
    outcomes = hammer.stop()
    assert set(outcomes) == {200}, [o for o in outcomes if o != 200][:5]
    new = {int(p) for p in server.wait_for(r"rolling restart done: probe ([\d, ]+)").group(1).split(", ")}
    assert len(new) == workers and not new & set(old)
    assert wait_gone(old, 30) == []
    assert {get(f"http://127.0.0.1:{port}/scope").json()["pid"] for _ in range(5)} <= new


def test_failed_replacement_keeps_the_old_worker(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    port = free_port()
    (project / "apps" / "flaky.py").write_text("from apps.probe import app\n")
    config = write_config(project, [{"name": "flaky", "app": "apps.flaky:app", "port": port}])
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    old = server.pids("flaky")
    (project / "apps" / "flaky.py").write_text("raise RuntimeError('bad deploy')\n")
    server.signal(signal.SIGHUP)
    server.wait_for(r"rolling restart failed, keeping worker \d+: .*bad deploy")
    assert get(f"http://127.0.0.1:{port}/scope").json()["pid"] == old[0]


def test_crashed_worker_is_restarted(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    port = free_port()
    config = write_config(project, [{"name": "probe", "app": "apps.probe:app", "port": port}])
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    (old,) = server.pids("probe")
    os.kill(old, signal.SIGKILL)
    server.wait_for(rf"probe: worker {old} was killed by SIGKILL; restarting in 0.5 s")
    new = int(server.wait_for(r"probe: worker (\d+) is serving").group(1))
    assert new != old
    assert get(f"http://127.0.0.1:{port}/scope").json()["pid"] == new


def test_ttin_and_ttou_scale_every_app(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config = write_config(project, [{"name": "a", "app": "apps.probe:alpha"}, {"name": "b", "app": "apps.probe:beta"}])
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    server.signal(signal.SIGTTIN)
    added = {label: int(server.wait_for(rf"{label}: added worker (\d+) \(2 now\)").group(1)) for label in "ab"}
    assert all(alive(pid) for pid in added.values())
    server.signal(signal.SIGTTOU)
    for label in "ab":
        server.wait_for(rf"{label}: removing a worker \(1 left\)")
    assert wait_gone(list(added.values()), 30) == []
    server.signal(signal.SIGTTOU)
    server.wait_for("a: keeping its last worker")


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH])
def test_other_signals_are_logged_and_ignored(project: Path, run_qkhyper: type[Qkhyper], signum: int) -> None:
    port = free_port()
    config = write_config(project, [{"name": "probe", "app": "apps.probe:app", "port": port}])
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    server.signal(signum)
    server.wait_for(f"{signal.Signals(signum).name}: ignored")
    assert get(f"http://127.0.0.1:{port}/scope").status_code == 200


def test_no_orphans_when_the_supervisor_is_killed(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config = write_config(
        project,
        [{"name": "a", "app": "apps.probe:alpha", "workers": 2}, {"name": "b", "app": "apps.probe:beta", "workers": 2}],
    )
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    children = server.pids("a") + server.pids("b")
    assert len(children) == 4 and all(alive(p) for p in children)
    server.proc.kill()
    assert wait_gone(children, 5) == []


def test_stop_during_startup_leaves_nothing(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    pids = project / "pids"
    config = write_config(project, [{"name": "slow", "app": "apps.crashy:never_ready"}])
    server = run_qkhyper(["serve", "--config", str(config)], project, clean_env(PROBE_PIDS=str(pids)))
    wait_until(pids.exists)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert wait_gone([int(p) for p in pids.read_text().split()], 5) == []


def test_startup_that_never_finishes_times_out(project: Path) -> None:
    config = write_config(project, [{"name": "slow", "app": "apps.crashy:never_ready"}], qkhyper="ready_timeout = 2")
    result = run_cli(["serve", "--config", str(config)], project)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("qkhyper: error: app 'slow': worker (pid")
    assert "was not ready within 2 s" in result.stderr


def test_shutdown_deadline_kills_a_stuck_app(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config = write_config(
        project, [{"name": "stuck", "app": "apps.crashy:ignores_shutdown"}], top="graceful_timeout = 1"
    )
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    (pid,) = server.pids("stuck")
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0
    assert not alive(pid)


@pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root and unshare for a PID namespace"
)
def test_as_pid_1_orphans_are_reaped(project: Path) -> None:
    config = write_config(project, [{"name": "orphans", "app": "apps.crashy:abandons_a_child", "workers": 2}])
    process = subprocess.Popen(
        [
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
            sys.executable,
            "-m",
            "qkhyper",
            "serve",
            "--config",
            str(config),
        ],
        cwd=project,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "ready:" in line:
                break
        assert any("running as PID 1: reaping orphaned processes" in line for line in lines), "".join(lines)
        supervisor = psutil.Process(process.pid).children()[0]  # qkhyper, PID 1 inside the namespace
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            zombies = [c for c in supervisor.children() if c.status() == psutil.STATUS_ZOMBIE]
            if not zombies:
                break
            time.sleep(0.2)
        assert zombies == []
        assert len(supervisor.children()) == 2  # only the two workers are left
        supervisor.terminate()  # unshare itself does not pass signals on
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
