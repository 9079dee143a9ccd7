"""The port map: where `serve` records the ports it bound, for `gateway`.

Written whole to a temporary file and moved into place with `os.replace`, so a
reader sees the old map or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path


def write_port_map(path: Path, ports: Mapping[str, Mapping[str, object]]) -> None:
    """Atomically replace the map at `path` with `{"apps": ports}`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"pid": os.getpid(), "apps": dict(ports)}, indent=2, sort_keys=True)
    fd, tmp = tempfile.mkstemp(prefix=".ports-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(payload + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_port_map(path: Path) -> dict[str, dict[str, object]]:
    """Return `{app: {"host", "port", "prefix", "aio"}}` of a running `serve`, or `{}`.

    A map whose `serve` has exited is ignored: its ports are stale, and a stale
    map must not override the config's ports.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or not _alive(data.get("pid")):
        return {}
    apps = data.get("apps")
    return apps if isinstance(apps, dict) else {}


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True
