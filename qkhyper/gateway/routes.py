"""The gateway's route table, built in the parent without any I/O.

Routing uses only this table, never the request's authority, Host or
X-Forwarded-Host, so the gateway cannot be used as an open proxy. The result,
`GatewayOptions`, is what every gateway worker receives as it is.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence

from ..config.load import normalize_prefix
from ..config.model import GatewayOptions, RouteSpec, Settings, UpstreamSettings, tls_settings
from ..config.portentries import PortEntry
from ..config.targets import parse_target
from ..errors import ConfigError

_UPSTREAM_RE = re.compile(r"^(?P<prefix>/?[^:]+):(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>\d+))?$")


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


def app_routes(settings: Settings, port_map: Mapping[str, PortEntry], host: str) -> list[RouteSpec]:
    """A route per TCP app of the config, on the port the last `serve` recorded, else the config's.

    The port map wins because it says what is running: an auto port, or the one
    port of `serve --aio`, whose apps expect their full path (no prefix stripping).
    The map's entries were checked when it was read (config/portentries.py).
    """
    routes = []
    for spec in settings.qkhyper.apps:
        entry = port_map.get(spec.name)
        if _unix_socket(spec.name, spec.bind, port_map):
            continue
        port = entry.port if entry is not None else spec.port
        if port <= 0:
            continue  # an auto port that `serve` has not recorded yet
        strip = not (entry is not None and entry.aio)
        routes.append(RouteSpec("/" + spec.prefix, ((host, port),), strip, f"app {spec.name}"))
    return routes


def _unix_socket(name: str, bind: str, port_map: Mapping[str, PortEntry]) -> str:
    """The unix socket an app listens on, per the running serve or else the config; "" for TCP."""
    entry = port_map.get(name)
    if entry is not None:
        return f"unix:{entry.unix}" if entry.unix else ""
    return bind


def check_unix_apps(settings: Settings, port_map: Mapping[str, PortEntry], moved: Iterable[RouteSpec]) -> None:
    """The proxy core connects over TCP only: an app on a unix socket needs its prefix sent elsewhere.

    Raises:
        ConfigError: naming the first app on a unix socket whose prefix no
            `--upstream` or `upstreams` entry with targets takes over.
    """
    covered = {route.prefix for route in moved if route.targets}
    for spec in settings.qkhyper.apps:
        where = _unix_socket(spec.name, spec.bind, port_map)
        if where and "/" + spec.prefix not in covered:
            raise ConfigError(
                f"app {spec.name!r} listens on {where}, and the gateway proxies to TCP only: give the app a port, "
                f"or send /{spec.prefix} elsewhere with --upstream or [qkhyper.gateway].upstreams"
            )


def check_tls_apps(settings: Settings, routes: Iterable[RouteSpec]) -> None:
    """The proxy core speaks plain HTTP to upstreams: apps served with TLS cannot be routed to.

    TLS belongs to the gateway (`[qkhyper.gateway]` certfile); `[qkhyper]` certfile
    makes the apps themselves speak TLS, which every request through the gateway
    would meet with a failed handshake (502).

    Raises:
        ConfigError: naming the first route that goes to an app of this config.
    """
    if not tls_settings(settings.qkhyper).enabled:
        return
    for route in routes:
        if route.source.startswith("app "):
            raise ConfigError(
                f"{route.source} is served with TLS ([qkhyper] certfile) and the gateway proxies plain HTTP: "
                "move certfile/keyfile to [qkhyper.gateway] and keep the apps on loopback HTTP"
            )


def table_routes(upstreams: Mapping[str, UpstreamSettings]) -> list[RouteSpec]:
    """The `upstreams` entries; one without targets holds only options (targets come from its app)."""
    routes = []
    for prefix, upstream in upstreams.items():
        where = f"[qkhyper.gateway].upstreams {prefix!r}"
        targets = tuple(parse_target(t, None, where) for t in upstream.targets)
        routes.append(
            RouteSpec(
                "/" + normalize_prefix(prefix, where),
                targets,
                True,
                "upstreams",
                upstream.upstream_idle_timeout,
                upstream.sse_idle_timeout,
            )
        )
    return routes


def merge_routes(apps: Iterable[RouteSpec], table: Iterable[RouteSpec], cli: Iterable[RouteSpec]) -> list[RouteSpec]:
    """Apps first; the config's `upstreams` and then `--upstream` add prefixes or move an app's.

    An `upstreams` entry without targets keeps the route's targets and sets its
    options; `--upstream` moves a route and keeps its options.

    Raises:
        ConfigError: the same prefix twice within `upstreams` or `--upstream`,
            or options for a prefix no route has.
    """
    merged = {route.prefix: route for route in apps}
    for layer in (table, cli):
        seen: set[str] = set()
        for route in layer:
            if route.prefix in seen:
                raise ConfigError(f"duplicate gateway prefix {route.prefix} ({route.source})")
            seen.add(route.prefix)
            merged[route.prefix] = _overlay(merged.get(route.prefix), route)
    return sorted(merged.values(), key=lambda r: r.prefix)


def _overlay(below: RouteSpec | None, route: RouteSpec) -> RouteSpec:
    if route.targets:
        if below is None or route.source == "upstreams":
            return route
        return dataclasses.replace(
            route,
            upstream_idle_timeout=below.upstream_idle_timeout,
            sse_idle_timeout=below.sse_idle_timeout,
        )
    if below is None:
        raise ConfigError(f"[qkhyper.gateway].upstreams {route.prefix!r}: no targets and no app with that prefix")
    return dataclasses.replace(
        below, upstream_idle_timeout=route.upstream_idle_timeout, sse_idle_timeout=route.sse_idle_timeout
    )


def gateway_options(
    settings: Settings, upstreams: Sequence[str] = (), port_map: Mapping[str, PortEntry] | None = None
) -> GatewayOptions:
    """Everything a gateway worker needs, resolved in the parent (routes, ports, settings).

    Args:
        port_map: the checked entries of a running serve's port map (`read_port_map`).

    Raises:
        ConfigError: duplicate prefixes, malformed upstreams, no route at all,
            an app on a unix socket with no route elsewhere, an app served with TLS.
    """
    cfg = settings.qkhyper.gateway
    port_map = port_map or {}
    apps = app_routes(settings, port_map, cfg.default_upstream)
    app_ports = {route.prefix: route.targets[0][1] for route in apps}
    cli = [parse_upstream(text, app_ports) for text in upstreams]
    table = table_routes(cfg.upstreams)
    check_unix_apps(settings, port_map, [*table, *cli])
    routes = merge_routes(apps, table, cli)
    check_tls_apps(settings, routes)
    fallback = parse_target(cfg.fallback, None, "fallback") if cfg.fallback else None
    if not routes and fallback is None:
        raise ConfigError(f"{settings.source}: the gateway has no routes (no apps with a known port, no upstreams)")
    return GatewayOptions(cfg, tuple(routes), fallback, settings.qkhyper.docs_assets)


def describe(options: GatewayOptions) -> list[str]:
    """The route table as `serve` prints it at start."""
    lines = [route.describe() for route in options.routes]
    if options.fallback:
        lines.append(f"(fallback) -> {options.fallback[0]}:{options.fallback[1]}")
    return lines
