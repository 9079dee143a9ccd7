"""The port map: atomic writes, and only a running serve's map is believed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from qkhyper.config.portmap import read_port_map, write_port_map


def test_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ports.json"
    write_port_map(path, {"users": {"host": "127.0.0.1", "port": 8001, "prefix": "/users"}})
    assert read_port_map(path) == {"users": {"host": "127.0.0.1", "port": 8001, "prefix": "/users"}}
    write_port_map(path, {"orders": {"host": "127.0.0.1", "port": 8002, "prefix": "/orders"}})
    assert list(read_port_map(path)) == ["orders"]
    assert [p.name for p in path.parent.iterdir()] == ["ports.json"]  # no temporary file left


def test_missing_broken_or_stale_maps_are_empty(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    assert read_port_map(path) == {}
    path.write_text("{not json")
    assert read_port_map(path) == {}
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path.write_text(json.dumps({"pid": int(exited.stdout), "apps": {"users": {"port": 1}}}))
    assert read_port_map(path) == {}
