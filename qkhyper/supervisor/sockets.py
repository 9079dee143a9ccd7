"""Binding every listening socket before any child starts.

A port clash is found here, before anything runs, and named with its app. The
sockets are inheritable so children serve them by file descriptor; N workers
of one app share one socket and so one accept queue (no SO_REUSEPORT, which
drops queued connections when a worker is replaced). A unit listens on a
socket systemd passed (activation.py), else on its unix socket (unixsock.py),
else on host:port.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from ..backends import serverkeys
from ..config.portentries import PortEntry
from ..errors import ConfigError
from .activation import adopt
from .plan import Unit
from .unixsock import BoundFile, bind_unix


def bind_socket(host: str, port: int, subject: str, backlog: int, *, inheritable: bool = True) -> socket.socket:
    """Bind and listen on `host:port` (port 0 picks a free one).

    `subject` starts the error line (`app 'users'`, `metrics`); `inheritable`
    False keeps the socket from the workers (the supervisor's own listeners).

    Raises:
        ConfigError: naming the subject and port when the address is taken or invalid.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"{subject}: cannot resolve host {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(backlog)  # the number both servers listen with again (serverkeys.backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{subject}: port {port} on {host} is already in use") from None
        raise ConfigError(f"{subject}: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(inheritable)
    return sock


@contextmanager
def bound_sockets(units: list[Unit], passed: Mapping[str, int] | None = None) -> Iterator[dict[str, socket.socket]]:
    """A listening socket per unit; all are closed when the block ends or a bind fails.

    Args:
        passed: descriptors systemd passed, by unit label (`activation.passed_sockets`).
    """
    sockets: dict[str, socket.socket] = {}
    files: list[BoundFile] = []
    try:
        for unit in units:
            backlog = serverkeys.backlog(unit.child.hypercorn)
            if passed and unit.label in passed:
                sockets[unit.label] = adopt(passed[unit.label], unit.label)
            elif unit.unix is not None:
                sockets[unit.label], file = bind_unix(unit.unix, unit.label, backlog)
                files.append(file)
            else:
                sockets[unit.label] = bind_socket(unit.host, unit.port, f"app {unit.label!r}", backlog)
        yield sockets
    finally:
        for sock in sockets.values():
            sock.close()
        for file in files:
            file.remove()


def bound_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def listen_url(sock: socket.socket, scheme: str = "http") -> str:
    """Where a unit listens, for the ready table: `http://host:port`, `https://...` or `unix:/path`.

    Read from the socket, which may be one systemd bound rather than the config's address.
    A unix socket shows its path alone, with TLS or without.
    """
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host = sock.getsockname()[0]
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{bound_port(sock)}"


def port_entry(sock: socket.socket, prefix: str, aio: bool) -> PortEntry:
    """What the port map records for an app served on `sock`."""
    if sock.family == socket.AF_UNIX:
        return PortEntry(prefix, aio, unix=str(sock.getsockname()))
    return PortEntry(prefix, aio, sock.getsockname()[0], bound_port(sock))
