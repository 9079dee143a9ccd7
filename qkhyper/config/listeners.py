"""Where servers listen and whom they believe: checks of `bind`, socket modes and the trust list.

Pure apart from the user and group lookups, so every mistake is one line at
load time (exit 2) and not a traceback in a worker. The rules:

- `bind` is `unix:PATH` only; TCP stays `host` + `port`, so an app has one way
  to say where it listens, and one listening socket (N workers share it).
- `socket_mode` is a TOML integer, written in octal (`0o660`). A decimal
  `660` is the classic slip (it is 0o1224): anything above 0o777 is refused
  with the octal spelling suggested.
- `forwarded_allow_ips` entries are addresses, networks, `"unix"` or `"*"`.
  uvicorn turns an entry it cannot parse into a literal that never matches,
  which hides the typo; here it is an error.
"""

from __future__ import annotations

import grp
import ipaddress
import pwd
from collections.abc import Callable

from ..errors import ConfigError
from .model import AppSpec

UNIX_PREFIX = "unix:"
UNIX_PEERS = "unix"  # forwarded_allow_ips entry: peers on a unix socket
EVERYONE = "*"
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_UNIX_PATH = 107
_LOOPBACK_NAMES = {"localhost", "ip6-localhost", "ip6-loopback"}


def check_listener(spec: AppSpec, where: str) -> None:
    """One app's `bind` and socket options.

    Raises:
        ConfigError: naming the key, for a bind that is not `unix:PATH`, both
            `bind` and `port`, a mode outside 0o000-0o777, an unknown owner or
            group, or socket options without a unix `bind`.
    """
    if not spec.bind:
        for key in ("socket_mode", "socket_owner", "socket_group"):
            if getattr(spec, key) not in (None, ""):
                raise ConfigError(f'{where}.{key} needs bind = "unix:/path/to.sock" (it applies to unix sockets)')
        return
    path = unix_path(spec.bind)
    if path is None:
        raise ConfigError(f"{where}.bind {spec.bind!r} must look like unix:/path/to.sock (TCP: set host and port)")
    if "\0" in path or len(path.encode()) > MAX_UNIX_PATH:
        raise ConfigError(f"{where}.bind {spec.bind!r}: the path must be 1-{MAX_UNIX_PATH} bytes without NUL")
    if spec.port:
        raise ConfigError(f"{where}: set bind or port, not both (bind = {spec.bind!r}, port = {spec.port})")
    if spec.socket_mode is not None:
        check_mode(spec.socket_mode, f"{where}.socket_mode")
    if spec.socket_owner:
        lookup_user(spec.socket_owner, f"{where}.socket_owner")
    if spec.socket_group:
        lookup_group(spec.socket_group, f"{where}.socket_group")


def unix_path(bind: str) -> str | None:
    """The path of a `unix:PATH` bind, or None when `bind` is not one."""
    if not bind.startswith(UNIX_PREFIX) or not bind[len(UNIX_PREFIX) :]:
        return None
    return bind[len(UNIX_PREFIX) :]


def check_mode(mode: int, key: str) -> None:
    if not 0 <= mode <= 0o777:
        hint = f"; write it in octal, e.g. 0o{mode}" if set(str(mode)) <= set("01234567") and mode <= 777 else ""
        raise ConfigError(f"{key} must be a mode 0o000-0o777, got {mode} (= {oct(mode)}){hint}")


def lookup_user(name: str, key: str) -> int:
    """A user name or numeric uid as a uid.

    Raises:
        ConfigError: naming the key when no such user exists.
    """
    return _lookup(name, key, "user", lambda n: pwd.getpwnam(n).pw_uid)


def lookup_group(name: str, key: str) -> int:
    """A group name or numeric gid as a gid.

    Raises:
        ConfigError: naming the key when no such group exists.
    """
    return _lookup(name, key, "group", lambda n: grp.getgrnam(n).gr_gid)


def _lookup(name: str, key: str, kind: str, find: Callable[[str], int]) -> int:
    if name.isdigit():
        return int(name)
    try:
        return find(name)
    except KeyError:
        raise ConfigError(f"{key}: no {kind} {name!r} on this machine") from None


def check_trusted(entries: list[str], key: str = "qkhyper.forwarded_allow_ips") -> None:
    """Every entry is an address, a network, "unix" or "*".

    Raises:
        ConfigError: naming the first entry that is none of them.
    """
    for entry in entries:
        if entry in (EVERYONE, UNIX_PEERS):
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f'{key}: {entry!r} is not an IP address, a network like 10.0.0.0/8, "unix" or "*"'
            ) from None


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warnings(host: str, trusted: list[str], *, listens: bool = True, proxy_headers: bool = True) -> list[str]:
    """One line per way the settings open a server beyond this machine (printed at start and by `check`)."""
    warnings = []
    if listens and not is_loopback(host):
        warnings.append(f"listening on {host or 'every address'}, beyond this machine (host is not loopback)")
    if proxy_headers and EVERYONE in trusted:
        warnings.append('forwarded_allow_ips = ["*"]: X-Forwarded-* from any peer is believed (client, scheme, prefix)')
    return warnings
