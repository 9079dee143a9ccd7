"""Socket activation: serving the listening sockets systemd passed instead of binding.

systemd's protocol (sd_listen_fds(3)): when `LISTEN_PID` is this process's
pid, file descriptors 3 to 3 + `LISTEN_FDS` - 1 are listening sockets, named
in order by the colon-separated `LISTEN_FDNAMES` (`FileDescriptorName=` in the
.socket unit, `--fdname=` for systemd-socket-activate). qkhyper matches them
to what it runs by name: an app's name, `aio` for `serve --aio`, `gateway`,
`static`. A unit with a passed socket serves it; one without binds as usual;
a name nothing here serves is one warning line.

`passed_sockets` decides from the environment alone (a table test covers it);
`adopt` checks that a descriptor really is a listening stream socket.
Workers never see the variables (childenv.py drops them).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError

SD_LISTEN_FDS_START = 3
NAME_HINT = "name it with FileDescriptorName= (systemd-socket-activate: --fdname=)"


@dataclass(frozen=True, slots=True)
class Passed:
    """Which passed descriptor each unit serves, and one line per descriptor none does."""

    fds: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def passed_sockets(env: Mapping[str, str], pid: int, labels: Sequence[str]) -> Passed:
    """Match the descriptors systemd passed to the units (`labels`) of this run.

    Raises:
        ConfigError: malformed variables, or two descriptors with one unit's name.
    """
    if "LISTEN_FDS" not in env:
        return Passed()
    if env.get("LISTEN_PID") != str(pid):
        return Passed(
            {}, [f"LISTEN_FDS is meant for pid {env.get('LISTEN_PID')}, not qkhyper ({pid}); binding as usual"]
        )
    try:
        count = int(env["LISTEN_FDS"])
    except ValueError:
        count = -1
    if count < 0:
        raise ConfigError(f"LISTEN_FDS must be a number of sockets, got {env['LISTEN_FDS']!r}")
    names = env["LISTEN_FDNAMES"].split(":") if "LISTEN_FDNAMES" in env else ["unknown"] * count
    if len(names) != count:
        raise ConfigError(f"LISTEN_FDNAMES names {len(names)} socket(s), LISTEN_FDS passes {count}")
    fds: dict[str, int] = {}
    warnings = []
    for fd, name in enumerate(names, SD_LISTEN_FDS_START):
        if name in fds:
            raise ConfigError(f"LISTEN_FDNAMES names {name!r} twice (fds {fds[name]} and {fd}); one socket per unit")
        if name in labels:
            fds[name] = fd
        else:
            hint = NAME_HINT if name in ("", "unknown") or name.endswith(".socket") else f"here: {', '.join(labels)}"
            warnings.append(
                f"socket activation: fd {fd} is named {name!r}, which nothing here serves ({hint}); ignored"
            )
    return Passed(fds, warnings)


def adopt(fd: int, name: str) -> socket.socket:
    """The passed descriptor as a socket a worker can serve.

    Raises:
        ConfigError: when it is not a listening stream socket.
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigError(f"socket activation: fd {fd} ({name}) is not a socket: {exc.strerror}") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()  # not ours to close
        raise ConfigError(
            f"socket activation: fd {fd} ({name}) is not a listening stream socket (ListenStream=, Accept=no)"
        )
    sock.set_inheritable(True)
    return sock
