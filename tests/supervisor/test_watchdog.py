"""The hung-worker watchdog with real workers: a blocked event loop is found, its stack logged, the worker replaced."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import Qkhyper, backend_env, clean_env, free_port, get, write_config

SERVERS = ["hypercorn", "hypercorn-uvloop", "hypercorn-trio", "uvicorn"]


def server_flags(server: str) -> list[str]:
    if server == "hypercorn-uvloop":
        return ["--backend", "hypercorn", "--worker-class", "uvloop"]
    if server == "hypercorn":
        return ["--backend", "hypercorn", "--worker-class", "asyncio"]
    return backend_env(server)[0]


def replaced(server: Qkhyper, label: str, pid: int) -> int:
    """The replacement's pid, once the hung worker `pid` was killed and the crash path restarted it."""
    server.wait_for(rf"{label}: worker {pid} was killed by SIGKILL; restarting in 0.5 s")
    return int(server.wait_for(rf"{label}: worker (\d+) is serving").group(1))


@pytest.mark.parametrize("flavour", SERVERS)
def test_a_blocked_event_loop_is_dumped_killed_and_replaced(
    project: Path, run_qkhyper: type[Qkhyper], flavour: str
) -> None:
    port = free_port()
    events = project / "events.log"
    config = write_config(project, [{"name": "probe", "app": "apps.probe:app", "port": port, "worker_timeout": 2}])
    server = run_qkhyper(
        ["serve", "--config", str(config), *server_flags(flavour)], project, clean_env(PROBE_LOG=str(events))
    )
    server.wait_ready()
    [pid] = server.pids("probe")
    blocked = threading.Thread(target=_ignore_errors, args=(f"http://127.0.0.1:{port}/block?seconds=120",))
    blocked.start()
    mark = len(server.lines)
    server.wait_for(rf"probe: worker {pid} unresponsive for 2 s; stack follows; replacing", start=mark)
    # faulthandler's dump, relayed with the app's label: the thread that blocked, in the route that blocked it.
    server.wait_for(r"^probe +\| (Current thread|Thread) 0x[0-9a-f]+", start=mark)
    server.wait_for(r"^probe +\| +File \".*probe\.py\", line \d+ in block", start=mark)
    new = replaced(server, "probe", pid)
    assert get(f"http://127.0.0.1:{port}/scope").json()["pid"] == new
    blocked.join(30)


def _ignore_errors(url: str) -> None:
    try:
        httpx.get(url, timeout=60)
    except httpx.HTTPError:
        pass  # the worker serving it is killed


@pytest.mark.parametrize(("command", "backend"), [("gateway", "hypercorn"), ("static", "uvicorn")])
def test_gateway_and_static_workers_are_watched_too(
    project: Path, run_qkhyper: type[Qkhyper], command: str, backend: str
) -> None:
    """qkhyper's own servers beat from their event loop too; a stopped worker (SIGSTOP) is found and replaced."""
    (project / "static").mkdir()
    (project / "static" / "index.html").write_text("<p>home</p>")
    port = free_port()
    config = write_config(project, [{"name": "probe", "app": "apps.probe:app"}], qkhyper="worker_timeout = 2")
    server = run_qkhyper([command, "--config", str(config), "--port", str(port), "--backend", backend], project)
    server.wait_ready()
    [pid] = server.pids(command)
    mark = len(server.lines)
    os.kill(pid, signal.SIGSTOP)
    server.wait_for(rf"{command}: worker {pid} unresponsive for 2 s; stack follows; replacing", start=mark)
    os.kill(pid, signal.SIGCONT)  # the stack request waits for it, up to the kill
    new = replaced(server, command, pid)
    assert get(f"http://127.0.0.1:{port}/").status_code in (200, 404)  # 404: the gateway's JSON listing routes
    assert new != pid
