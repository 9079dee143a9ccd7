"""systemd notifications: the pure rules as tables, and the sender against real datagram sockets.

The supervisor's use of them (when READY, RELOADING, STOPPING, WATCHDOG are
sent) runs in-process in test_systemd.py and with real processes in
test_sdnotify.py.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from qkhyper.supervisor.childenv import worker_environ
from qkhyper.supervisor.notifier import NoNotifier, SocketNotifier, notifier_from_env
from qkhyper.supervisor.notify import (
    SlotHealth,
    View,
    notify_address,
    problems,
    ready,
    reloading,
    settles_at,
    starting_status,
    status_line,
    stopping,
    watchdog_period,
)

PID = 4242


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (None, None)),
        ({"NOTIFY_SOCKET": ""}, (None, None)),
        ({"NOTIFY_SOCKET": "/run/systemd/notify"}, ("/run/systemd/notify", None)),
        ({"NOTIFY_SOCKET": "@/org/freedesktop/systemd1/notify/1"}, ("\0/org/freedesktop/systemd1/notify/1", None)),
        (
            {"NOTIFY_SOCKET": "vsock:2:1234"},
            (
                None,
                "NOTIFY_SOCKET='vsock:2:1234' is not a unix socket path or @name; systemd will not hear from qkhyper",
            ),
        ),
        (
            {"NOTIFY_SOCKET": "run/notify"},
            (None, "NOTIFY_SOCKET='run/notify' is not a unix socket path or @name; systemd will not hear from qkhyper"),
        ),
    ],
)
def test_notify_address(env: dict[str, str], expected: tuple[str | None, str | None]) -> None:
    assert notify_address(env) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),  # WatchdogSec=30: a ping every 15 s
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(PID)}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "1"}, 0.0000005),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "30s"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_PID": str(PID)}, None),
    ],
)
def test_watchdog_period(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_period(env, PID) == expected


NOW = 1000.0


@pytest.mark.parametrize(
    ("slots", "found", "settles"),
    [
        ([], [], None),
        ([SlotHealth("users", NOW - 1, 0)], [], None),
        ([SlotHealth("users", NOW, 2)], [], None),  # two crashes in a row: restarted, not a loop yet
        ([SlotHealth("users", None, 1)], ["users has no worker"], None),  # crashed, backing off
        ([SlotHealth("users", NOW - 5, 1, hung=True)], ["users worker hung"], None),
        ([SlotHealth("users", NOW - 5, 3)], ["users crash-looping (3 failures in a row)"], NOW + 55),
        ([SlotHealth("users", NOW - 60, 3)], [], None),  # served 60 s: settled
        ([SlotHealth("users", NOW - 59.9, 7)], ["users crash-looping (7 failures in a row)"], NOW + 0.1),
        ([SlotHealth("users", None, 5)], ["users has no worker"], None),
        (
            [SlotHealth("users", NOW, 0), SlotHealth("users", None, 1), SlotHealth("users", None, 1)],
            ["users has no worker"],  # said once for two slots of one app
            None,
        ),
        (
            [SlotHealth("users", None, 1), SlotHealth("orders", NOW - 10, 4), SlotHealth("orders", NOW - 30, 3)],
            [
                "users has no worker",
                "orders crash-looping (4 failures in a row)",
                "orders crash-looping (3 failures in a row)",
            ],
            NOW + 30,
        ),
    ],
)
def test_which_slots_starve_the_watchdog(slots: list[SlotHealth], found: list[str], settles: float | None) -> None:
    assert problems(slots, NOW) == found
    assert settles_at(slots, NOW) == settles


@pytest.mark.parametrize(
    ("view", "line"),
    [
        (View(["users", "orders"], 2, 2), "2 apps, 2 workers ready"),
        (View(["users", "orders", "billing"], 3, 5), "3 apps, 5 workers ready"),
        (View(["users"], 1, 1), "users: 1 worker ready"),
        (View(["gateway"], 1, 2), "gateway: 2 workers ready"),
        (View(["aio"], 2, 1), "2 apps, 1 worker ready"),  # serve --aio: one unit, every app
        (View(["users", "orders"], 2, 3, rolling="users"), "rolling users"),
        (View(["users", "orders"], 2, 3, problems=["users has no worker"]), "users has no worker"),
        (
            View(["users", "orders"], 2, 3, rolling="orders", problems=["users has no worker", "orders worker hung"]),
            "users has no worker; orders worker hung",
        ),
        (
            View(["users", "orders"], 2, 3, rolling="users", draining=True, problems=["x"]),
            "stopping: draining 3 workers",
        ),
    ],
)
def test_status_line(view: View, line: str) -> None:
    assert status_line(view) == line


def test_messages() -> None:
    assert ready("2 apps, 2 workers ready") == "READY=1\nSTATUS=2 apps, 2 workers ready"
    assert reloading(12503555794, "rolling users") == "RELOADING=1\nMONOTONIC_USEC=12503555794\nSTATUS=rolling users"
    assert stopping("stopping: draining 1 worker") == "STOPPING=1\nSTATUS=stopping: draining 1 worker"
    # A STATUS= value is one line: a newline would start another assignment.
    assert ready("users\nREADY=0  oops") == "READY=1\nSTATUS=users READY=0 oops"
    assert starting_status(["users", "orders"], 2, 3) == "starting 2 apps, 3 workers"
    assert starting_status(["static"], 1, 1) == "starting static: 1 worker"


def test_workers_never_see_the_notify_variables() -> None:
    inherited = {
        "PATH": "/bin",
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": "7",
        "LISTEN_FDS": "1",
    }
    assert worker_environ(inherited, {}) == {"PATH": "/bin", "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder whose socket paths fit in sun_path (108 bytes), which pytest's tmp_path may not."""
    with tempfile.TemporaryDirectory(prefix="qk") as folder:
        yield Path(folder)


def receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


@pytest.mark.parametrize("abstract", [False, True])
def test_the_sender_reaches_a_path_and_an_abstract_socket(short_dir: Path, abstract: bool) -> None:
    name = f"@qkhyper-test-{os.getpid()}" if abstract else str(short_dir / "notify")
    with receiver(name.replace("@", "\0", 1)) as sock:
        notifier = notifier_from_env({"NOTIFY_SOCKET": name})
        assert isinstance(notifier, SocketNotifier)
        notifier.send("READY=1\nSTATUS=users: 1 worker ready")
        assert sock.recv(4096) == b"READY=1\nSTATUS=users: 1 worker ready"
        notifier.close()


def test_no_socket_no_notifier(caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(notifier_from_env({}), NoNotifier)
    assert isinstance(notifier_from_env({"NOTIFY_SOCKET": "vsock:2:1"}), NoNotifier)
    assert "NOTIFY_SOCKET='vsock:2:1' is not a unix socket path" in caplog.text


def test_a_failing_send_warns_once_and_keeps_trying(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = short_dir / "notify"
    notifier = SocketNotifier(str(path))
    with caplog.at_level(logging.DEBUG, "qkhyper.supervisor"):
        notifier.send("READY=1")  # nobody listens yet (systemd re-executing, say)
        notifier.send("WATCHDOG=1")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"systemd notification READY=1 not sent to {path}: ")
    with receiver(str(path)) as sock:  # systemd is back: the next message gets through
        notifier.send("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"
    notifier.close()


def test_a_full_queue_never_blocks_the_sender(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A systemd that does not read (hung, or swamped) must not stall the supervisor's loop."""
    path = short_dir / "notify"
    with receiver(str(path)) as sock:
        notifier = SocketNotifier(str(path))
        for _ in range(2000):  # far beyond a datagram queue (net.unix.max_dgram_qlen, 512 by default)
            notifier.send("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"
        notifier.close()
    assert "further failures are not logged" in caplog.text
