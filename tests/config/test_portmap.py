"""The port map: atomic writes, and only a running serve's map of this config is believed.

Each hostile case is a row: what is in the file's place, and the one warning
line a reader gives instead of believing it (or hanging, or raising).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from qkhyper.config.portentries import PortEntry, parse_entry
from qkhyper.config.portmap import MAX_BYTES, parse_port_map, read_port_map, recorded_ports
from qkhyper.errors import ConfigError

CONFIG = "/srv/app/hypercorn.toml"
USERS = {"host": "127.0.0.1", "port": 8001, "prefix": "/users", "aio": False}


def read_soon(path: Path, config: str = CONFIG):
    """read_port_map in a thread with a deadline: a reader that blocks fails the test instead of hanging it."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(read_port_map(path, config=config)), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), f"reading {path} blocked"
    return result[0]


@contextmanager
def held(path: Path, content: object) -> Iterator[None]:
    """`content` at `path`, locked as a running serve holds its map."""
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with open(path) as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        yield


def test_round_trip_lock_and_removal(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ports.json"
    entries = {"users": PortEntry("/users", False, "127.0.0.1", 8001), "docs": PortEntry("/docs", True, unix="/s.sock")}
    with recorded_ports(path, entries, config=CONFIG):
        found = read_soon(path)
        assert (found.apps, found.warnings) == (entries, [])
        assert sorted(p.name for p in path.parent.iterdir()) == ["ports.json"]  # no temporary file left
        assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert not path.exists()  # removed when its serve stops


def test_a_map_another_serve_replaced_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    with recorded_ports(path, {"a": PortEntry("/a", host="h", port=1)}, config=CONFIG):
        with recorded_ports(path, {"b": PortEntry("/b", host="h", port=2)}, config=CONFIG):
            assert list(read_soon(path).apps) == ["b"]
        assert not path.exists()  # the second removed its own
    assert not path.exists()


def test_a_map_whose_serve_died_is_not_believed(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    script = (
        "import sys, pathlib; from qkhyper.config.portmap import recorded_ports; "
        "from qkhyper.config.portentries import PortEntry\n"
        f"with recorded_ports(pathlib.Path({str(path)!r}), {{'users': PortEntry('/users', host='h', port=1)}}, "
        f"config={CONFIG!r}): print('written', flush=True); sys.stdin.read()"
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline() == "written\n"
    assert list(read_soon(path).apps) == ["users"]
    writer.kill()  # SIGKILL: no clean-up ran, the file stays, the kernel drops the lock
    writer.wait(10)
    assert path.exists()
    found = read_soon(path)
    assert found.apps == {}
    assert found.warnings == [f"port map {path}: no running serve holds it (left by one that stopped?); ignored"]


def test_missing_map_is_quiet(tmp_path: Path) -> None:
    found = read_soon(tmp_path / "ports.json")
    assert (found.apps, found.warnings) == ({}, [])


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.mkdir()


def _device(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))  # left open until the test process ends


def _unlocked_pid_1(path: Path) -> None:
    path.write_text(json.dumps({"pid": 1, "config": CONFIG, "apps": {"users": USERS}}))


@pytest.mark.parametrize(
    ("make", "warning"),
    [
        (_fifo, "not a regular file"),  # used to block the gateway's start
        (_directory, "not a regular file"),
        (_device, "not a regular file"),
        (_socket, "cannot open it"),
        (_unlocked_pid_1, "no running serve holds it"),  # pid 1 is always alive: it used to count
    ],
    ids=["fifo", "directory", "symlink-to-device", "socket", "pid-1-unlocked"],
)
def test_hostile_files_are_ignored_with_one_warning(tmp_path: Path, make: Callable[[Path], None], warning: str) -> None:
    path = tmp_path / "ports.json"
    make(path)
    found = read_soon(path)
    assert found.apps == {}
    assert len(found.warnings) == 1 and warning in found.warnings[0] and "\n" not in found.warnings[0]


@pytest.mark.parametrize(
    ("content", "warning"),
    [
        ({"config": CONFIG, "apps": {}, "pad": "x" * MAX_BYTES}, f"larger than {MAX_BYTES} bytes"),
        ("{not json", "not valid JSON"),
        ("[" * 100000, "not valid JSON"),  # nesting deep enough to exhaust the recursion limit
        ("[1, 2]", "not a JSON object"),
        ({"apps": {"users": USERS}}, "written for config None"),
        ({"config": "/elsewhere/hypercorn.toml", "apps": {"users": USERS}}, "written for config '/elsewhere"),
        ({"config": CONFIG, "apps": [USERS]}, "'apps' is not an object"),
    ],
)
def test_held_maps_with_bad_content_are_ignored(tmp_path: Path, content: object, warning: str) -> None:
    path = tmp_path / "ports.json"
    with held(path, content):
        found = read_soon(path)
    assert found.apps == {}
    assert len(found.warnings) == 1 and warning in found.warnings[0]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (None, "is a NoneType, not an object"),
        ([1], "is a list, not an object"),
        ("127.0.0.1:8001", "is a str, not an object"),
        ({**USERS, "port": True}, "has port True, not a number 1-65535"),  # was 127.0.0.1:True
        ({**USERS, "port": "8001"}, "has port '8001'"),
        ({**USERS, "port": 0}, "has port 0"),
        ({**USERS, "port": 70000}, "has port 70000"),
        ({**USERS, "port": 8001.0}, "has port 8001.0"),
        ({k: v for k, v in USERS.items() if k != "port"}, "has port None"),
        ({**USERS, "host": ""}, "has no valid host"),
        ({**USERS, "host": 5}, "has no valid host"),
        ({**USERS, "prefix": "users"}, "has no valid prefix"),
        ({**USERS, "aio": "yes"}, "has an 'aio' that is not true or false"),
        ({"unix": "run/u.sock", "prefix": "/users"}, "has no valid unix socket path"),
        ({"unix": "/run/u.sock", "port": 80, "prefix": "/users"}, "has no valid unix socket path"),
    ],
)
def test_bad_entries(raw: object, why: str) -> None:
    assert parse_entry(raw) == why or why in str(parse_entry(raw))


def test_good_entries() -> None:
    assert parse_entry(USERS) == PortEntry("/users", False, "127.0.0.1", 8001)
    assert parse_entry({"unix": "/run/u.sock", "prefix": "/users", "aio": True}) == PortEntry(
        "/users", True, unix="/run/u.sock"
    )


def test_a_bad_entry_leaves_the_others() -> None:
    data = {"config": CONFIG, "apps": {"users": USERS, "orders": {**USERS, "port": True}, "x": 3}}
    found = parse_port_map(data, config=CONFIG, where="ports.json")
    assert list(found.apps) == ["users"]
    assert found.warnings == [
        "port map ports.json: entry 'orders' has port True, not a number 1-65535; the config's port is used",
        "port map ports.json: entry 'x' is a int, not an object; the config's port is used",
    ]


def test_an_unwritable_map_is_exit_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    path.mkdir()
    (path / "keep").write_text("")
    with pytest.raises(ConfigError, match=f"cannot write the port map {path}: Is a directory"):
        with recorded_ports(path, {}, config=CONFIG):
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["ports.json"]  # the temporary file was removed
