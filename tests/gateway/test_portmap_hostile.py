"""A real gateway starts, and routes by the config, whatever sits in the port map's place."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import pytest

from tests.conftest import Qkhyper, free_port, get, write_config


def _fifo(path: Path, decoy: int, config: Path) -> AbstractContextManager[None]:
    os.mkfifo(path)  # opening it for reading used to block the gateway's start for good
    return nullcontext()


def _pid_1(path: Path, decoy: int, config: Path) -> AbstractContextManager[None]:
    entry = {"host": "127.0.0.1", "port": decoy, "prefix": "/up", "aio": False}
    path.write_text(json.dumps({"pid": 1, "config": str(config), "apps": {"up": entry}}))
    return nullcontext()  # pid 1 is alive, and used to make this map count


@contextmanager
def _bad_entries(path: Path, decoy: int, config: Path) -> Iterator[None]:
    """A map a live process holds, for this config, whose entries are not entries."""
    apps = {"up": {"host": "127.0.0.1", "port": True, "prefix": "/up", "aio": False}, "other": [decoy]}
    path.write_text(json.dumps({"pid": os.getpid(), "config": str(config), "apps": apps}))
    with open(path) as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        yield


@pytest.mark.parametrize(
    ("hostile", "warning"),
    [
        (_fifo, "not a regular file"),
        (_pid_1, "no running serve holds it"),
        (_bad_entries, "entry 'up' has port True, not a number 1-65535; the config's port is used"),
    ],
    ids=["fifo", "pid-1", "bad-entries"],
)
def test_gateway_routes_by_the_config_when_the_map_is_hostile(
    project: Path,
    run_qkhyper: type[Qkhyper],
    hostile: Callable[[Path, int, Path], AbstractContextManager[None]],
    warning: str,
) -> None:
    upstream = free_port()
    config = write_config(project, [{"name": "up", "app": "apps.upstream:app", "port": upstream}])
    serve = run_qkhyper(["serve", "--config", str(config)], project)
    serve.wait_ready()
    port_map = project / ".qkhyper" / "ports.json"
    port_map.unlink()  # the running serve still holds its own (now unlinked) map
    with hostile(port_map, free_port(), config):
        port = free_port()
        gateway = run_qkhyper(["gateway", "--config", str(config), "--port", str(port)], project)
        gateway.wait_ready(timeout=30)
        gateway.wait_for(rf"qkhyper \| warning: port map .*{warning}")
        gateway.wait_for(rf"route /up -> 127.0.0.1:{upstream}$")
        answer = get(f"http://127.0.0.1:{port}/up/echo")
        assert answer.status_code == 200 and answer.json()["route"] == "/echo"
        assert "Traceback" not in gateway.output
