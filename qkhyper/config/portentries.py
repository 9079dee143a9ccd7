"""One app's entry in the port map, checked field by field (pure).

`serve` writes `{"host", "port", "prefix", "aio"}` for a TCP listener and
`{"unix", "prefix", "aio"}` for a unix socket. A reader takes an entry only in
exactly that shape: `"port": true` used to pass `isinstance(x, int)` and route
to `127.0.0.1:True`, and a non-object entry was a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PortEntry:
    """Where one app of a running `serve` listens."""

    prefix: str
    aio: bool = False
    host: str = ""
    port: int = 0  # 0 with `unix`
    unix: str = ""  # absolute path of its unix socket

    def as_json(self) -> dict[str, object]:
        where: dict[str, object] = {"unix": self.unix} if self.unix else {"host": self.host, "port": self.port}
        return {**where, "prefix": self.prefix, "aio": self.aio}


def parse_entry(raw: object) -> PortEntry | str:
    """The entry, or why it is refused (to finish "entry 'users' ...")."""
    if not isinstance(raw, dict):
        return f"is a {type(raw).__name__}, not an object"
    prefix, aio = raw.get("prefix"), raw.get("aio", False)
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        return "has no valid prefix"
    if not isinstance(aio, bool):
        return "has an 'aio' that is not true or false"
    if "unix" in raw:
        unix = raw["unix"]
        if (
            not isinstance(unix, str)
            or not unix.startswith("/")
            or "\0" in unix
            or set(raw) - {"unix", "prefix", "aio"}
        ):
            return "has no valid unix socket path"
        return PortEntry(prefix, aio, unix=unix)
    host, port = raw.get("host"), raw.get("port")
    if not isinstance(host, str) or not host:
        return "has no valid host"
    # bool is an int subclass: `true` is not a port.
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return f"has port {port!r}, not a number 1-65535"
    return PortEntry(prefix, aio, host, port)
