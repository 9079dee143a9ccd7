"""Where upstream traffic goes: `HOST[:PORT]` and `http(s)://HOST[:PORT][/base]`, parsed without I/O.

The gateway's routes, its fallback and static's `--api-target` are parsed
here, in the parent, so a mistake is one line at start-up (exit 2) naming the
flag or key and the value, and the workers receive finished targets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import ConfigError, UsageError

Address = tuple[str, int]

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(-?\w*))?$")
_HOST = re.compile(r"^([0-9A-Fa-f:.]+|[A-Za-z0-9_.-]+)$")
# A base path: segments of unreserved, sub-delims, ':' '@' and percent-escapes (RFC 3986 pchar).
_BASE = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*/?$")
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Target:
    """One parsed target: where to connect, over TLS or not, and the path to put in front."""

    host: str  # without brackets: "::1"
    port: int
    tls: bool = False  # https://
    base: str = ""  # "/v1" (no trailing slash); "" for none
    url: bool = False  # written as http:// or https://

    @property
    def address(self) -> Address:
        return self.host, self.port


def parse_target(text: str, default_port: int | None, what: str) -> Address:
    """`host[:port]` or `[v6]:port`; without a port, `default_port` (if any).

    Raises:
        ConfigError: naming `what`, for anything else or a port outside 1-65535.
    """
    target = parse_host_port(text, default_port, what)
    return target.address


def parse_host_port(text: str, default_port: int | None, what: str, no_port: str = "") -> Target:
    """`host[:port]` or `[v6]:port` as a plain-HTTP `Target`.

    Args:
        no_port: the message's end when there is no port and no `default_port`.

    Raises:
        ConfigError: naming `what` and `text`.
    """
    match = _HOST_PORT.match(text.strip())
    if not match:
        raise ConfigError(f"{what}: {text!r} must look like HOST:PORT")
    written = match.group(2)
    if written is None:
        if default_port is None:
            raise ConfigError(f"{what}: {text!r} {no_port or 'must look like HOST:PORT'}")
        port = default_port
    else:
        port = _port(written, text, what)
    return Target(match.group(1).strip("[]"), port)


def parse_url(text: str, what: str, error: type[UsageError] = ConfigError) -> Target:
    """`http(s)://HOST[:PORT][/base]`; without a port, the scheme's (80 or 443).

    Raises:
        `error` (ConfigError or UsageError): naming `what` and `text`, for another
            scheme, no host, a bad port, a query, a fragment or credentials.
    """
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise error(f"{what}: {text!r} must look like http(s)://HOST[:PORT][/base] (scheme {scheme or 'missing'})")
    if not parts.hostname or not _HOST.match(parts.hostname):
        raise error(f"{what}: {text!r} has no valid host")
    if parts.username is not None or parts.password is not None:
        raise error(f"{what}: {text!r}: credentials in the URL are not supported")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise error(f"{what}: {text!r}: a target takes no query or fragment")
    if not _BASE.match(parts.path):
        raise error(f"{what}: {text!r}: {parts.path!r} is not a usable base path")
    written = parts.netloc.rpartition("]")[2].rpartition("@")[2].partition(":")
    port = _port(written[2], text, what, error) if written[1] else DEFAULT_PORTS[scheme]
    return Target(parts.hostname, port, scheme == "https", parts.path.rstrip("/"), True)


def parse_any(text: str, default_port: int | None, what: str, no_port: str = "") -> Target:
    """A URL (`http://`, `https://`, any `scheme://`) or `host[:port]`."""
    if "://" in text:
        return parse_url(text, what)
    return parse_host_port(text, default_port, what, no_port)


def parse_http_url(text: str, what: str) -> Address:
    """`http(s)://HOST[:PORT][/base]` as (host, port).

    Raises:
        UsageError: naming `what`, for anything `parse_url` refuses.
    """
    return parse_api_target(text, what).address


def parse_api_target(text: str, what: str) -> Target:
    """Static's `--api-target`: a URL, never a bare host.

    Raises:
        UsageError: naming `what`, for anything `parse_url` refuses.
    """
    return parse_url(text, what, UsageError)


def _port(written: str, text: str, what: str, error: type[UsageError] = ConfigError) -> int:
    if not written.isascii() or not written.isdigit():  # isdigit alone takes "١٢"
        raise error(f"{what}: {text!r}: port {written!r} is not a number")
    port = int(written)
    if not 0 < port < 65536:
        raise error(f"{what}: {text!r}: port {port} is outside 1-65535")
    return port
