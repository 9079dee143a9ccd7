"""The gateway's route table, built and matched without any I/O.

Routing uses only this table, never the request's authority, Host or
X-Forwarded-Host, so the gateway cannot be used as an open proxy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..config.load import normalize_prefix
from ..config.model import Settings
from ..errors import ConfigError

_UPSTREAM_RE = re.compile(r"^(?P<prefix>/?[^:]+):(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class RouteSpec:
    """One row of the table: `/prefix` -> targets. `strip` is False for `serve --aio` apps."""

    prefix: str
    targets: tuple[tuple[str, int], ...]
    strip: bool = True
    source: str = "config"

    def describe(self) -> str:
        where = ", ".join(f"{host}:{port}" for host, port in self.targets)
        return f"{self.prefix or '(fallback)'} -> {where}{'' if self.strip else ' (full path)'}"


def parse_target(text: str, default_port: int | None, what: str) -> tuple[str, int]:
    """`host[:port]`, `[v6]:port`; the port may default."""
    match = re.match(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(\d+))?$", text.strip())
    if not match or (match.group(2) is None and default_port is None):
        raise ConfigError(f"{what}: {text!r} must look like HOST:PORT")
    port = int(match.group(2)) if match.group(2) else default_port
    if port is None or not 0 < port < 65536:
        raise ConfigError(f"{what}: {text!r} has no valid port")
    return match.group(1).strip("[]"), port


def parse_upstream(text: str, app_ports: Mapping[str, int]) -> RouteSpec:
    """`--upstream PREFIX:HOST[:PORT]`; without a port, the port of the app with that prefix."""
    match = _UPSTREAM_RE.match(text.strip())
    if not match:
        raise ConfigError(f"--upstream {text!r} must look like PREFIX:HOST[:PORT], e.g. users:127.0.0.1:8001")
    prefix = "/" + normalize_prefix(match.group("prefix"), f"--upstream {text!r}")
    port = int(match.group("port")) if match.group("port") else app_ports.get(prefix)
    if port is None or not 0 < port < 65536:
        raise ConfigError(f"--upstream {text!r}: no port given and no app with prefix {prefix}")
    return RouteSpec(prefix, ((match.group("host").strip("[]"), port),), True, "--upstream")


def app_routes(settings: Settings, port_map: Mapping[str, Mapping[str, object]], host: str) -> list[RouteSpec]:
    """A route per app of the config, on the port the last `serve` recorded, else the config's.

    The port map wins because it says what is running: an auto port, or the one
    port of `serve --aio`, whose apps expect their full path (no prefix stripping).
    """
    routes = []
    for spec in settings.qkhyper.apps:
        entry = port_map.get(spec.name, {})
        port = entry.get("port") or spec.port
        if not isinstance(port, int) or port <= 0:
            continue  # an auto port that `serve` has not recorded yet
        strip = not entry.get("aio", False)
        routes.append(RouteSpec("/" + spec.prefix, ((host, port),), strip, f"app {spec.name}"))
    return routes


def table_routes(upstreams: Mapping[str, list[str]]) -> list[RouteSpec]:
    routes = []
    for prefix, targets in upstreams.items():
        where = f"[qkhyper.gateway].upstreams {prefix!r}"
        if not targets:
            raise ConfigError(f"{where}: no targets")
        parsed = tuple(parse_target(t, None, where) for t in targets)
        routes.append(RouteSpec("/" + normalize_prefix(prefix, where), parsed, True, "upstreams"))
    return routes


def merge_routes(apps: Iterable[RouteSpec], table: Iterable[RouteSpec], cli: Iterable[RouteSpec]) -> list[RouteSpec]:
    """Apps first; the config's `upstreams` and then `--upstream` add prefixes or move an app's.

    Raises:
        ConfigError: the same prefix twice within `upstreams`, or within `--upstream`.
    """
    merged = {route.prefix: route for route in apps}
    for layer in (table, cli):
        seen: set[str] = set()
        for route in layer:
            if route.prefix in seen:
                raise ConfigError(f"duplicate gateway prefix {route.prefix} ({route.source})")
            seen.add(route.prefix)
            merged[route.prefix] = route
    return sorted(merged.values(), key=lambda r: r.prefix)
