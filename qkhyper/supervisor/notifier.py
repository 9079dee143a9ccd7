"""Sending notifications to systemd: one datagram per message on `NOTIFY_SOCKET`, never blocking, never raising.

The supervisor is what keeps the apps up; a notification is advice to the
service manager. So the socket is non-blocking (a full receive queue drops
the message instead of stalling the trio loop) and a failed send is one
warning, then debug lines: the sends go on being tried, since systemd's
socket comes back after `systemctl daemon-reexec` and a watchdog that had
stopped for good would then get us killed. What to send is `notify.py`'s.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Protocol

from .notify import notify_address

log = logging.getLogger("qkhyper.supervisor")


class Notifier(Protocol):
    """Where the supervisor's notifications go (tests pass one that records them)."""

    def send(self, message: str) -> None: ...


class NoNotifier:
    """Not started by systemd (no `NOTIFY_SOCKET`): nothing to tell."""

    def send(self, message: str) -> None:
        pass


class SocketNotifier:
    """sd_notify(3) in a few lines: an AF_UNIX datagram to `address` (a leading NUL: abstract namespace)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._warned = False

    def send(self, message: str) -> None:
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
            self._sock.sendto(message.encode(), self.address)
        except OSError as exc:
            first = message.split("\n", 1)[0]
            if self._warned:
                log.debug("systemd notification %s not sent: %s", first, exc)
                return
            self._warned = True
            shown = self.address.replace("\0", "@", 1)
            log.warning(
                "systemd notification %s not sent to %s: %s; further failures are not logged", first, shown, exc
            )

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def notifier_from_env(env: Mapping[str, str]) -> Notifier:
    """A notifier for `NOTIFY_SOCKET`, or one that sends nothing (with a warning when the address is unusable)."""
    address, problem = notify_address(env)
    if problem is not None:
        log.warning("warning: %s", problem)
    return NoNotifier() if address is None else SocketNotifier(address)
