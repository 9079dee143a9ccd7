"""What a real `qkhyper` tells systemd, caught on a datagram socket standing in for systemd's.

The socket asks the kernel for each sender's credentials (SO_PASSCRED), as
systemd does to enforce `NotifyAccess=main`: every message must come from
the supervisor itself. The exact timing rules (pings per interval, a crash
loop starving the watchdog) are pinned in-process in test_systemd.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qkhyper.supervisor.systemd import monotonic_usec
from tests.conftest import Qkhyper, clean_env, free_port, get, socket_activate, write_config

CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Note:
    pid: int  # the sender, as the kernel saw it
    fields: dict[str, str]
    received_usec: int  # CLOCK_MONOTONIC on arrival

    @property
    def first(self) -> str:
        """The first assignment, as sent: "READY=1"."""
        return "=".join(next(iter(self.fields.items()), ("", "")))


class FakeSystemd:
    """An abstract-namespace datagram socket read by a thread; `wait_for` returns the next matching note."""

    def __init__(self) -> None:
        self.name = f"@qkhyper-test-{os.getpid()}-{id(self)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + self.name[1:])
        self.notes: list[Note] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(CREDENTIALS.size))
            except OSError:
                return  # closed
            pid = 0
            for level, kind, payload in ancillary:
                if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                    pid = CREDENTIALS.unpack(payload[: CREDENTIALS.size])[0]
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            with self._changed:
                self.notes.append(Note(pid, fields, monotonic_usec()))
                self._changed.notify_all()

    def wait_for(self, check: Callable[[Note], bool], after: int = 0, timeout: float = 60.0) -> int:
        """The index of the first note from `after` on that passes `check`; fails at the deadline."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(after, len(self.notes)):
                    if check(self.notes[index]):
                        return index
                left = deadline - time.monotonic()
                assert left > 0, f"no such notification within {timeout} s; got {self.notes[-20:]}"
                self._changed.wait(min(left, 0.2))

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._reader.join(5)


def says(first: str) -> Callable[[Note], bool]:
    return lambda note: note.first == first


@pytest.fixture
def systemd() -> Iterator[FakeSystemd]:
    fake = FakeSystemd()
    yield fake
    fake.close()


def test_serve_tells_systemd_ready_reloading_and_stopping(
    project: Path, run_qkhyper: type[Qkhyper], systemd: FakeSystemd
) -> None:
    users = free_port()
    config = write_config(
        project,
        [
            {"name": "users", "app": "apps.envprobe:app", "port": users, "workers": 2},
            {"name": "orders", "app": "apps.envprobe:other"},
        ],
    )
    env = clean_env(NOTIFY_SOCKET=systemd.name, WATCHDOG_USEC="1000000")
    server = run_qkhyper(["serve", "--config", str(config)], project, env)
    ready = systemd.wait_for(says("READY=1"))
    # READY=1 means dependents may connect now: the apps answer at once, and none of them sees systemd's variables.
    seen = get(f"http://127.0.0.1:{users}/env").json()
    assert seen["systemd"] == {"NOTIFY_SOCKET": None, "WATCHDOG_USEC": None, "WATCHDOG_PID": None}
    server.wait_ready()
    assert systemd.notes[ready].fields["STATUS"] == "2 apps, 3 workers ready"
    assert systemd.notes[0].fields == {"STATUS": "starting 2 apps, 3 workers"}
    systemd.wait_for(says("WATCHDOG=1"), systemd.wait_for(says("WATCHDOG=1"), ready) + 1)  # two pings

    before = monotonic_usec()
    server.signal(signal.SIGHUP)
    reloading = systemd.wait_for(says("RELOADING=1"), ready)
    note = systemd.notes[reloading]
    assert before <= int(note.fields["MONOTONIC_USEC"]) <= note.received_usec
    assert note.fields["STATUS"] == "rolling users"
    reloaded = systemd.wait_for(says("READY=1"), reloading)
    server.wait_for("rolling restart done")
    assert get(f"http://127.0.0.1:{users}/env").json()["pid"] != seen["pid"]  # new workers serve

    server.signal(signal.SIGTERM)
    stopping = systemd.wait_for(says("STOPPING=1"), reloaded)
    assert systemd.notes[stopping].fields["STATUS"] == "stopping: draining 3 workers"
    assert server.wait() == 0
    assert {note.pid for note in systemd.notes} == {server.proc.pid}  # NotifyAccess=main holds


def test_a_crash_loop_stops_the_watchdog_ping(project: Path, run_qkhyper: type[Qkhyper], systemd: FakeSystemd) -> None:
    config = write_config(project, [{"name": "probe", "app": "apps.probe:app"}])
    env = clean_env(NOTIFY_SOCKET=systemd.name, WATCHDOG_USEC="1000000")
    server = run_qkhyper(["serve", "--config", str(config)], project, env)
    server.wait_ready()
    [pid] = server.pids("probe")
    for _ in range(3):  # three deaths in a row, each soon after its start
        mark = len(server.lines)
        os.kill(pid, signal.SIGKILL)
        server.wait_for(rf"probe: worker {pid} was killed by SIGKILL", start=mark)
        pid = int(server.wait_for(r"probe: worker (\d+) is serving", start=mark).group(1))
    looping = systemd.wait_for(lambda note: note.fields.get("STATUS") == "probe crash-looping (3 failures in a row)")
    server.wait_for(r"watchdog: not pinging systemd while probe crash-looping \(3 failures in a row\)")
    server.signal(signal.SIGTERM)
    stopping = systemd.wait_for(says("STOPPING=1"), looping)
    assert [n for n in systemd.notes[looping:stopping] if n.first == "WATCHDOG=1"] == []
    assert server.wait() == 0


@pytest.mark.parametrize(
    ("command", "status"), [("gateway", "gateway: 1 worker ready"), ("static", "static: 1 worker ready")]
)
def test_gateway_and_static_notify_too(
    project: Path, run_qkhyper: type[Qkhyper], systemd: FakeSystemd, command: str, status: str
) -> None:
    (project / "static").mkdir()
    (project / "static" / "index.html").write_text("<p>home</p>")
    config = write_config(project, [{"name": "users", "app": "apps.probe:app"}])
    args = [command, "--config", str(config), "--port", str(free_port())]
    server = run_qkhyper(args, project, clean_env(NOTIFY_SOCKET=systemd.name))
    ready = systemd.wait_for(says("READY=1"))
    assert systemd.notes[ready].fields["STATUS"] == status
    server.signal(signal.SIGTERM)
    systemd.wait_for(says("STOPPING=1"), ready)
    assert server.wait() == 0


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None, reason="systemd-socket-activate not installed")
def test_under_systemd_socket_activate_with_notify(project: Path, systemd: FakeSystemd) -> None:
    """systemd's own launcher: the passed socket is served, and READY=1 comes from the process it started."""
    process, answer = socket_activate(
        project, free_port(), "apps.envprobe:app", "/env", f"NOTIFY_SOCKET={systemd.name}"
    )
    try:
        assert answer.json()["systemd"]["NOTIFY_SOCKET"] is None
        ready = systemd.wait_for(says("READY=1"))
        assert systemd.notes[ready].pid == process.pid  # it exec'd qkhyper: the service's main process
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    systemd.wait_for(says("STOPPING=1"))
