"""The port map: where `serve` records what it listens on, for `gateway`.

Written whole to a temporary file and moved into place with `os.replace`, so a
reader sees the old map or the new one, never half of one; removed again when
that `serve` exits.

Reading it trusts nothing it has not checked (README "The port map"):

- only a regular file is read: it is opened with O_NONBLOCK and checked with
  fstat, since a FIFO in its place hung the gateway's start, and at most
  `MAX_BYTES` of it;
- it counts only while the `serve` that wrote it runs, for this config. That
  serve holds an exclusive `flock` on the file for as long as it lives (the
  kernel drops it when the process dies, even by SIGKILL), and the map names
  the config file. A reader whose shared lock is granted at once knows no
  serve holds the map. A recorded pid was believed for pid 1 (always alive)
  and for any reused pid, and pids mean nothing across containers sharing a
  folder; a lock needs neither `/proc` nor the same pid namespace;
- every entry is checked (`portentries.parse_entry`); a bad one is left out,
  and the config's port stands for its app.

Anything ignored is one warning line. The map is as trusted as the folder it
lives in: whoever can write there could also edit hypercorn.toml.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .portentries import PortEntry, parse_entry

log = logging.getLogger("qkhyper.supervisor")

MAX_BYTES = 1024 * 1024  # a map lists a handful of apps; more than this is not one
FORMAT = 2  # `version` in the file: 2 added `config` and the lock


@dataclass(frozen=True, slots=True)
class PortMap:
    """What a reader may believe (`apps`), and one line per thing it would not."""

    apps: dict[str, PortEntry] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@contextmanager
def recorded_ports(path: Path, ports: Mapping[str, PortEntry], *, config: str) -> Iterator[None]:
    """The map, written and locked for the life of the block, then removed unless another serve replaced it.

    Raises:
        ConfigError: naming the file, when it cannot be written (exit 2).
    """
    fd = _write_locked(path, ports, config)
    try:
        yield
    finally:
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
        except OSError:
            pass  # already gone, or replaced: not ours to remove
        os.close(fd)


def _write_locked(path: Path, ports: Mapping[str, PortEntry], config: str) -> int:
    """Write the map to a temporary file, lock it, move it into place; return the open, locked fd."""
    payload = {
        "version": FORMAT,
        "pid": os.getpid(),  # for people reading the file; readers go by the lock
        "config": config,
        "apps": {name: entry.as_json() for name, entry in ports.items()},
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".ports-", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write the port map {path}: {exc.strerror}") from None
    try:
        os.write(fd, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())
        os.fsync(fd)
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide it from a gateway run as another user
        _lock(fd, path)  # before it is visible: no reader sees it unlocked
        os.replace(tmp, path)
    except OSError as exc:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write the port map {path}: {exc.strerror}") from None
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:  # a file system without locks: serve runs, gateways use the config's ports
        log.warning("port map %s cannot be locked (%s): gateways will not believe it", path, exc.strerror)


def read_port_map(path: Path, *, config: str) -> PortMap:
    """The entries of a running `serve` of `config`, or none; never raises, never blocks."""
    warnings: list[str] = []
    data = _load_held(path, warnings)
    if data is None:
        return PortMap({}, warnings)
    return parse_port_map(data, config=config, where=str(path))


def parse_port_map(data: object, *, config: str, where: str) -> PortMap:
    """Check a decoded map of a running serve: whose config it is, then each entry."""
    if not isinstance(data, dict):
        return PortMap({}, [f"port map {where}: not a JSON object; ignored"])
    written_for = data.get("config")
    if written_for != config:
        return PortMap({}, [f"port map {where}: written for config {written_for!r}, not {config!r}; ignored"])
    apps = data.get("apps")
    if not isinstance(apps, dict):
        return PortMap({}, [f"port map {where}: 'apps' is not an object; ignored"])
    believed: dict[str, PortEntry] = {}
    warnings = []
    for name, raw in apps.items():
        entry = parse_entry(raw)
        if isinstance(entry, str):
            warnings.append(f"port map {where}: entry {name!r} {entry}; the config's port is used")
        else:
            believed[name] = entry
    return PortMap(believed, warnings)


def _load_held(path: Path, warnings: list[str]) -> object | None:
    """The decoded file if a live serve holds it, else None (with a warning unless it is simply absent)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        warnings.append(f"port map {path}: cannot open it ({exc.strerror}); ignored")
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            warnings.append(f"port map {path}: not a regular file; ignored")
            return None
        if not _held(fd):
            warnings.append(f"port map {path}: no running serve holds it (left by one that stopped?); ignored")
            return None
        raw = b""
        while len(raw) <= MAX_BYTES and (chunk := os.read(fd, MAX_BYTES + 1 - len(raw))):
            raw += chunk  # the file may grow after fstat: never read more than the cap
    except OSError as exc:
        warnings.append(f"port map {path}: cannot read it ({exc.strerror}); ignored")
        return None
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:
        warnings.append(f"port map {path}: larger than {MAX_BYTES} bytes; ignored")
        return None
    try:
        data: object = json.loads(raw)
    except (ValueError, RecursionError):
        warnings.append(f"port map {path}: not valid JSON; ignored")
        return None
    return data


def _held(fd: int) -> bool:
    """True when another open file holds an exclusive lock on it: the serve that wrote it is alive."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False
