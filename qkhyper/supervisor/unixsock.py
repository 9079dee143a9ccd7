"""Unix-socket listeners: bind with the configured mode and owner, replace stale files, never live ones.

- A socket file left by a run that died (nobody accepts on it: connecting is
  refused) is removed and bound again, as nginx and gunicorn do; a live one
  (a connection is accepted, or queued) is exit 2, since binding over it would
  steal its path from a running server. Anything at the path that is not a
  socket is exit 2 too: qkhyper never deletes a user's file.
- The mode and owner are set between bind() and listen(). Until listen()
  every connection is refused, so there is no moment when the socket accepts
  with looser permissions, and no process-wide umask is touched.
- The file is removed on exit if it is still the one this run bound (a later
  run may have replaced it).
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass

from ..config.listeners import lookup_group, lookup_user
from ..errors import ConfigError

PROBE_TIMEOUT = 1.0  # a live server whose backlog is full does not answer a connect at once


@dataclass(frozen=True, slots=True)
class UnixSocket:
    """Where and how a unit listens on a unix socket (`bind = "unix:..."`), resolved by the plan."""

    path: str  # absolute
    mode: int | None = None
    owner: str = ""
    group: str = ""


@dataclass(frozen=True, slots=True)
class BoundFile:
    """A socket file this run created: removed at exit only while it is still this inode."""

    path: str
    inode: int

    def remove(self) -> None:
        try:
            if os.lstat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass  # already gone, or not ours to remove


def bind_unix(spec: UnixSocket, label: str, backlog: int) -> tuple[socket.socket, BoundFile]:
    """Listen on `spec.path` with its mode and owner.

    Raises:
        ConfigError: naming the app and path: a live server there, something
            that is not a socket, or an OS refusal (no folder, no permission).
    """
    where = f"app {label!r}: unix:{spec.path}"
    clear_stale(spec.path, where)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(spec.path)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{where}: cannot listen there: {exc.strerror}") from None
    bound = BoundFile(spec.path, os.lstat(spec.path).st_ino)
    try:
        _set_access(spec, where)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        bound.remove()
        raise
    sock.set_inheritable(True)
    return sock, bound


def _set_access(spec: UnixSocket, where: str) -> None:
    try:
        if spec.mode is not None:
            os.chmod(spec.path, spec.mode)
        if spec.owner or spec.group:
            uid = lookup_user(spec.owner, "socket_owner") if spec.owner else -1
            gid = lookup_group(spec.group, "socket_group") if spec.group else -1
            os.chown(spec.path, uid, gid)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot set its mode or owner: {exc.strerror}") from None


def clear_stale(path: str, where: str) -> None:
    """Remove a socket file nobody accepts on; refuse a live one or a non-socket.

    Raises:
        ConfigError: prefixed with `where`.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{where}: cannot check the path: {exc.strerror}") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise ConfigError(f"{where}: the path exists and is not a socket; qkhyper will not replace it")
    if is_live(path, where):
        raise ConfigError(f"{where} is in use by a running server (it accepts connections)")
    try:
        os.unlink(path)  # stale: left by a run that died
    except FileNotFoundError:
        pass


def is_live(path: str, where: str) -> bool:
    """Whether something accepts connections on the socket file at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except (TimeoutError, BlockingIOError):
        return True  # its backlog is full: busy, not dead
    except OSError as exc:
        raise ConfigError(f"{where}: cannot check whether a server listens there: {exc.strerror}") from None
    finally:
        probe.close()
    return True
