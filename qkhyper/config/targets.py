"""Where upstream traffic goes: `HOST:PORT` and `http://HOST[:PORT]`, parsed without I/O.

The gateway's routes, its fallback and static's `--api-target` are parsed
here, in the parent, so a mistake is one line at start-up (exit 2) and the
workers receive finished `(host, port)` pairs.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ..errors import ConfigError, UsageError

Address = tuple[str, int]

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(\d+))?$")


def parse_target(text: str, default_port: int | None, what: str) -> Address:
    """`host[:port]` or `[v6]:port`; without a port, `default_port` (if any).

    Raises:
        ConfigError: naming `what`, for anything else or a port outside 1-65535.
    """
    match = _HOST_PORT.match(text.strip())
    if not match or (match.group(2) is None and default_port is None):
        raise ConfigError(f"{what}: {text!r} must look like HOST:PORT")
    port = int(match.group(2)) if match.group(2) else default_port
    if port is None or not 0 < port < 65536:
        raise ConfigError(f"{what}: {text!r} has no valid port")
    return match.group(1).strip("[]"), port


def parse_http_url(text: str, what: str) -> Address:
    """`http://HOST[:PORT]` as (host, port).

    Raises:
        UsageError: naming `what`, for another scheme, a path, or no host.
    """
    parts = urlsplit(text)
    try:
        port = 80 if parts.port is None else parts.port  # `or 80` turned an explicit :0 into 80
    except ValueError:  # not a number, or outside 0-65535
        port = -1
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or port < 1:
        raise UsageError(f"{what} {text!r} must look like http://HOST[:PORT]")
    return parts.hostname, port
