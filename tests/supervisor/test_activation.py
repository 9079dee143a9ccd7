"""Socket activation: the sockets systemd passes, matched by name, served instead of bound.

Pure rows for the environment protocol; real sockets for `adopt`; and real
`qkhyper` processes started the way systemd starts them: the listening
sockets at fd 3 onwards, LISTEN_PID naming the qkhyper process itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qkhyper.errors import ConfigError
from qkhyper.supervisor.activation import NAME_HINT, Passed, adopt, passed_sockets
from qkhyper.supervisor.childenv import worker_environ
from tests.conftest import Qkhyper, clean_env, free_port, get, socket_activate, write_config

PID = 4242
LABELS = ["users", "orders"]


def env(fds: str, names: str | None = None, pid: int = PID) -> dict[str, str]:
    found = {"LISTEN_FDS": fds, "LISTEN_PID": str(pid)}
    return found if names is None else {**found, "LISTEN_FDNAMES": names}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Passed()),
        (env("1", "users"), Passed({"users": 3})),
        (env("2", "orders:users"), Passed({"orders": 3, "users": 4})),
        (
            env("3", "users:gateway:ghost"),
            Passed(
                {"users": 3},
                [
                    "socket activation: fd 4 is named 'gateway', which nothing here serves (here: users, orders); ignored",
                    "socket activation: fd 5 is named 'ghost', which nothing here serves (here: users, orders); ignored",
                ],
            ),
        ),
        (
            env("1"),  # no names: systemd would call it "unknown"
            Passed(
                {}, [f"socket activation: fd 3 is named 'unknown', which nothing here serves ({NAME_HINT}); ignored"]
            ),
        ),
        (
            env("1", "qkhyper-users.socket"),  # systemd's default name: the unit's
            Passed(
                {},
                [
                    "socket activation: fd 3 is named 'qkhyper-users.socket', which nothing here serves "
                    f"({NAME_HINT}); ignored"
                ],
            ),
        ),
        (
            env("1", "users", pid=1),  # meant for another process (a shell that did not exec)
            Passed({}, [f"LISTEN_FDS is meant for pid 1, not qkhyper ({PID}); binding as usual"]),
        ),
        (env("0"), Passed()),
    ],
)
def test_which_fd_serves_which_unit(environ: dict[str, str], expected: Passed) -> None:
    assert passed_sockets(environ, PID, LABELS) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (env("two", "users"), "LISTEN_FDS must be a number of sockets, got 'two'"),
        (env("-1", ""), "LISTEN_FDS must be a number of sockets, got '-1'"),
        (env("2", "users"), "LISTEN_FDNAMES names 1 socket(s), LISTEN_FDS passes 2"),
        (env("2", "users:users"), "LISTEN_FDNAMES names 'users' twice (fds 3 and 4); one socket per unit"),
    ],
)
def test_malformed_activation_is_exit_2(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        passed_sockets(environ, PID, LABELS)
    assert str(info.value) == message


def test_workers_never_see_the_activation_variables() -> None:
    inherited = {"PATH": "/bin", "LISTEN_FDS": "1", "LISTEN_PID": "7", "LISTEN_FDNAMES": "users", "A": "shell"}
    assert worker_environ(inherited, {"A": "app"}) == {"PATH": "/bin", "A": "app", "PYTHONUNBUFFERED": "1"}


def test_adopt_takes_only_listening_stream_sockets() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        adopted = adopt(os.dup(listening.fileno()), "users")
        assert adopted.getsockname() == listening.getsockname() and adopted.get_inheritable()
        adopted.close()
    with socket.socket() as idle, socket.socket(type=socket.SOCK_DGRAM) as udp:
        for sock in (idle, udp):
            with pytest.raises(ConfigError, match=r"fd \d+ \(users\) is not a listening stream socket"):
                adopt(sock.fileno(), "users")
            assert sock.fileno() >= 0  # left open: not ours
    read, write = os.pipe()
    with pytest.raises(ConfigError, match=rf"fd {read} \(users\) is not a socket"):
        adopt(read, "users")
    os.close(read)
    os.close(write)


# Starts a command as systemd does: the given descriptors moved to 3, 4, ...,
# LISTEN_FDS/LISTEN_FDNAMES set and LISTEN_PID naming the process itself, then exec.
WRAPPER = """
import os, sys
fds, names, command = sys.argv[1].split(","), sys.argv[2], sys.argv[3:]
moved = [os.dup(int(fd)) for fd in fds]  # out of the way of 3, 4, ... first
for target, fd in enumerate(moved, 3):
    os.dup2(fd, target)
    os.set_inheritable(target, True)  # dup2 onto itself keeps dup's close-on-exec
os.environ.update(LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=names, LISTEN_PID=str(os.getpid()))
os.execvp(command[0], command)
"""


class Activated(Qkhyper):
    """A `qkhyper` started by WRAPPER with `sockets` passed under `names`."""

    def __init__(self, args: list[str], cwd: Path, sockets: list[socket.socket], names: list[str]) -> None:
        fds = [sock.fileno() for sock in sockets]
        command = [sys.executable, "-m", "qkhyper", *args]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, ",".join(map(str, fds)), ":".join(names), *command],
            cwd=cwd,
            env=clean_env(),
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


@pytest.fixture
def activated() -> Iterator[type[Activated]]:
    started: list[Activated] = []

    class Tracked(Activated):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)  # type: ignore[arg-type]
            started.append(self)

    yield Tracked
    for process in started:
        process.stop()


def test_serve_takes_the_passed_sockets_and_binds_the_rest(project: Path, activated: type[Activated]) -> None:
    taken = socket.create_server(("127.0.0.1", 0))  # bound here: qkhyper could not bind this port itself
    ghost = socket.create_server(("127.0.0.1", 0))
    users, orders = taken.getsockname()[1], free_port()
    config = write_config(
        project,
        [
            {"name": "users", "app": "apps.envprobe:app", "port": users},
            {"name": "orders", "app": "apps.envprobe:other", "port": orders},
        ],
    )
    server = activated(["serve", "--config", str(config)], project, [taken, ghost], ["users", "ghost"])
    taken.close()
    ghost.close()  # qkhyper holds its own copies now
    server.wait_ready()
    assert "is named 'ghost', which nothing here serves (here: users, orders); ignored" in server.output
    server.wait_for(rf"\| users +/users +http://127.0.0.1:{users} ")
    seen = get(f"http://127.0.0.1:{users}/env").json()
    assert seen["listen"] == {"LISTEN_FDS": None, "LISTEN_PID": None, "LISTEN_FDNAMES": None}
    assert get(f"http://127.0.0.1:{orders}/env").status_code == 200  # no passed socket: bound as usual
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_gateway_takes_a_passed_unix_socket(project: Path, activated: type[Activated]) -> None:
    path = project / "gateway.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    upstream = free_port()
    config = write_config(project, [{"name": "users", "app": "apps.probe:app", "port": upstream}])
    gateway = activated(["gateway", "--config", str(config)], project, [listener], ["gateway"])
    listener.close()
    gateway.wait_ready()
    gateway.wait_for(rf"\| gateway +/ +unix:{path} ")
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=30) as client:
        answer = client.get("http://qkhyper/nowhere")
    assert answer.status_code == 404 and answer.json()["prefixes"] == ["/users"]
    gateway.signal(signal.SIGTERM)
    assert gateway.wait() == 0
    assert path.exists()  # systemd's socket: not qkhyper's to remove


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None, reason="systemd-socket-activate not installed")
def test_under_systemd_socket_activate(project: Path) -> None:
    process, answer = socket_activate(project, free_port(), "apps.probe:app", "/scope")
    try:
        assert answer.json()["resource"]["opened"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
