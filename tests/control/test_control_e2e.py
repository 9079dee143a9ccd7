"""`qkhyper status/restart/scale/reload/stop` against real supervisors: 2 apps x 2 workers, real sockets.

Every command runs as a user would run it (`python -m qkhyper ...` in the
project folder) and its effect is read back from `status --json`.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Qkhyper, clean_env, free_port, run_cli, write_config
from tests.supervisor.test_signals import Hammer, alive, wait_gone, wait_until

APPS = [
    {"name": "users", "app": "apps.probe:alpha", "workers": 2},
    {"name": "orders", "app": "apps.probe:beta", "workers": 2},
]


def status(project: Path) -> dict[str, Any]:
    done = run_cli(["status", "--json"], project)
    assert done.returncode == 0, done.stderr
    [supervisor] = json.loads(done.stdout)["supervisors"]
    return dict(supervisor)


def pids(supervisor: dict[str, Any], app: str) -> list[int]:
    [found] = [a for a in supervisor["apps"] if a["name"] == app]
    return [w["pid"] for w in found["workers"] if w["state"] == "ready"]


def serving(project: Path, run_qkhyper: type[Qkhyper], *flags: str) -> tuple[Qkhyper, dict[str, int]]:
    ports = {"users": free_port(), "orders": free_port()}
    write_config(project, [{**app, "port": ports[str(app["name"])]} for app in APPS])
    server = run_qkhyper(["serve", *flags], project)
    server.wait_ready()
    return server, ports


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_restart_rolls_one_app_under_load_and_leaves_the_other_alone(
    project: Path, run_qkhyper: type[Qkhyper], backend: str
) -> None:
    server, ports = serving(project, run_qkhyper, "--backend", backend)
    before = status(project)
    assert pids(before, "users") == server.pids("users") and pids(before, "orders") == server.pids("orders")
    hammers = {app: Hammer(f"http://127.0.0.1:{port}/scope") for app, port in ports.items()}
    wait_until(lambda: all(len(h.outcomes) >= 20 for h in hammers.values()))
    done = run_cli(["restart", "users"], project)
    assert done.returncode == 0, done.stderr
    after = status(project)
    new = pids(after, "users")
    old = ", ".join(map(str, pids(before, "users")))
    assert done.stdout == f"users: {old} -> {', '.join(map(str, new))}\n"
    marks = {app: len(h.outcomes) for app, h in hammers.items()}
    wait_until(lambda: all(len(h.outcomes) >= marks[app] + 20 for app, h in hammers.items()))
    for app, hammer in hammers.items():
        outcomes = hammer.stop()
        assert set(outcomes) == {200}, (app, [o for o in outcomes if o != 200][:5])
    assert pids(after, "orders") == pids(before, "orders")
    assert not set(new) & set(pids(before, "users")) and len(new) == 2
    assert wait_gone(pids(before, "users"), 30) == []
    assert all(alive(pid) for pid in pids(before, "orders"))
    users = [w for a in after["apps"] if a["name"] == "users" for w in a["workers"] if w["state"] == "ready"]
    assert all(w["restarts_by_reason"] == {"roll": 1} and w["last_exit"].startswith("roll: worker ") for w in users)


def test_every_command_on_two_apps_of_two_workers(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    server, ports = serving(project, run_qkhyper)
    first = status(project)
    assert (first["server"], first["state"], first["pid"]) == ("serve", "ready", server.proc.pid)
    assert first["config"] == str(project / "hypercorn.toml")
    [users, orders] = first["apps"]
    assert (users["name"], users["prefixes"], users["url"], users["backend"]) == (
        "users",
        ["/users"],
        f"http://127.0.0.1:{ports['users']}",
        "hypercorn",
    )
    assert [(w["slot"], w["state"], w["restarts"]) for w in orders["workers"]] == [(1, "ready", 0), (2, "ready", 0)]
    assert all(w["rss_mb"] > 1 and w["requests"] == 0 for w in users["workers"])

    # The request count comes with the workers' heartbeats, at least once a second.
    for _ in range(5):
        assert run_cli(["status"], project).returncode == 0
    for _ in range(6):
        httpx.get(f"http://127.0.0.1:{ports['orders']}/scope", timeout=30)
    wait_until(lambda: sum(w["requests"] for w in status(project)["apps"][1]["workers"]) == 6)

    text = run_cli(["status"], project)
    assert text.returncode == 0
    assert text.stdout.startswith(f"serve: pid {server.proc.pid}, ready, up ")
    assert f"users   /users   http://127.0.0.1:{ports['users']}  hypercorn  2" in text.stdout

    scaled = run_cli(["scale", "orders", "3"], project)
    assert scaled.returncode == 0, scaled.stderr
    assert scaled.stdout.startswith("orders: 2 -> 3 worker(s): ")
    assert len(pids(status(project), "orders")) == 3
    down = run_cli(["scale", "orders", "1"], project)
    assert down.returncode == 0 and down.stdout.startswith("orders: 3 -> 1 worker(s): ")
    now = status(project)
    assert len(pids(now, "orders")) == 1 and pids(now, "users") == pids(first, "users")

    reloaded = run_cli(["reload"], project)
    assert reloaded.returncode == 0, reloaded.stderr
    after = status(project)
    assert not set(pids(after, "users")) & set(pids(now, "users"))
    assert not set(pids(after, "orders")) & set(pids(now, "orders"))

    stopped = run_cli(["stop"], project)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == f"serve (pid {server.proc.pid}): stopped\n"
    assert server.wait(5) == 0  # gone when `stop` returned; the timeout only bounds a failure
    assert not (project / ".qkhyper" / "control.sock").exists()
    assert wait_gone(pids(after, "users") + pids(after, "orders"), 5) == []

    gone = run_cli(["status"], project)
    assert gone.returncode == 1 and gone.stdout == ""
    assert gone.stderr.startswith("qkhyper: error: nothing is running for ") and gone.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["restart", "nope"], 2, "qkhyper: error: no running app 'nope'; running: orders, users\n"),
        (["scale", "users", "0"], 2, "qkhyper: error: scale: N must be from 1 to 64, got 0\n"),
        (["scale", "users", "many"], 2, None),
    ],
)
def test_bad_requests_get_one_line(
    project: Path, run_qkhyper: type[Qkhyper], args: list[str], code: int, message: str | None
) -> None:
    serving(project, run_qkhyper)
    done = run_cli(args, project)
    assert done.returncode == code
    if message is not None:
        assert done.stderr == message
    assert "Traceback" not in done.stderr


def test_stop_now_kills_without_a_drain(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    server, _ = serving(project, run_qkhyper)
    workers = server.pids("users") + server.pids("orders")
    done = run_cli(["stop", "--now"], project)
    assert done.returncode == 0, done.stderr
    assert server.wait(5) == 0
    assert wait_gone(workers, 5) == []
    assert "control: stop now" in server.output
    assert "exited with code 0" not in server.output  # killed, not drained


def test_a_stale_socket_is_replaced_and_the_new_one_is_private(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    server, _ = serving(project, run_qkhyper)
    path = project / ".qkhyper" / "control.sock"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    server.proc.send_signal(signal.SIGKILL)  # leaves its socket file behind
    server.wait(30)
    assert path.exists()
    assert run_cli(["status"], project).returncode == 1
    again = Qkhyper(["serve"], project)
    try:
        again.wait_ready()
        assert status(project)["pid"] == again.proc.pid
        assert "no control socket" not in again.output
    finally:
        again.stop()


def test_a_second_supervisor_runs_without_one_and_says_so(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    server, _ = serving(project, run_qkhyper, "users")
    other = run_qkhyper(["serve", "orders"], project)
    other.wait_ready()
    other.wait_for(r"warning: no control socket: control socket .*control.sock is in use by a running server")
    assert status(project)["pid"] == server.proc.pid


def test_gateway_and_static_answer_on_their_own_sockets(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    serving(project, run_qkhyper)
    (project / "static").mkdir()
    (project / "static" / "index.html").write_text("<h1>hi</h1>")
    gateway_port, static_port = free_port(), free_port()
    gateway = run_qkhyper(["gateway", "--port", str(gateway_port), "--workers", "2"], project)
    static = run_qkhyper(["static", "--port", str(static_port)], project)
    gateway.wait_ready()
    static.wait_ready()
    done = run_cli(["status", "--json"], project)
    assert done.returncode == 0, done.stderr
    servers = {s["server"]: s for s in json.loads(done.stdout)["supervisors"]}
    assert set(servers) == {"serve", "gateway", "static"}
    assert servers["gateway"]["apps"][0]["url"] == f"http://127.0.0.1:{gateway_port}"
    old = pids(servers["gateway"], "gateway")
    restarted = run_cli(["restart", "gateway", "users"], project)
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.startswith(f"gateway: {', '.join(map(str, old))} -> ")
    assert "\nusers: " in restarted.stdout
    one = run_cli(["status", "--socket", str(project / ".qkhyper" / "control-static.sock")], project)
    assert one.returncode == 0 and one.stdout.startswith("static: pid ")
    stopped = run_cli(["stop"], project)
    assert stopped.returncode == 0 and stopped.stdout.count(": stopped\n") == 3


def test_control_socket_off(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config = write_config(project, [{"name": "users", "app": "apps.probe:alpha"}], qkhyper='control_socket = ""')
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    assert not (project / ".qkhyper" / "control.sock").exists()
    done = run_cli(["status"], project)
    assert done.returncode == 2
    assert done.stderr == (
        'qkhyper: error: control_socket = "" in the config: this config\'s supervisors have no control socket\n'
    )


def test_nothing_running_is_one_line_and_exit_1(project: Path) -> None:
    write_config(project, APPS)
    for command in (["status"], ["restart", "users"], ["scale", "users", "2"], ["reload"], ["stop"]):
        done = run_cli(command, project, env=clean_env())
        assert done.returncode == 1, command
        assert done.stderr.startswith("qkhyper: error: nothing is running for ") and done.stderr.count("\n") == 1
        assert os.path.basename(str(project)) in done.stderr
