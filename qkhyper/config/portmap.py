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
    """Return `{app: {"host", "port", "prefix"}}`, or `{}` if there is no usable map."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    apps = data.get("apps") if isinstance(data, dict) else None
    return apps if isinstance(apps, dict) else {}
