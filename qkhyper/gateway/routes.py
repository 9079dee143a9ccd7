"""The gateway's route table, built in the parent without any I/O.

Routing uses only this table, never the request's authority, Host or
X-Forwarded-Host, so the gateway cannot be used as an open proxy. The result,
`GatewayOptions`, is what every gateway worker receives as it is.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..config.load import normalize_prefix
from ..config.model import (
    GatewayOptions,
    RouteSpec,
    Settings,
    UpstreamSettings,
    UpstreamTlsSpec,
    tls_settings,
)
from ..config.portentries import PortEntry
from ..config.targets import Target, parse_any, parse_target
from ..errors import ConfigError

UPSTREAM_FORMS = "PREFIX=HOST[:PORT], PREFIX:HOST[:PORT] or PREFIX=http(s)://HOST[:PORT][/base]"


def parse_upstream(text: str, app_ports: Mapping[str, int]) -> RouteSpec:
    """`--upstream PREFIX=TARGET` or `PREFIX:HOST[:PORT]`, TARGET being `HOST[:PORT]` or a URL.

    Without a port, a bare host takes the port of the app with that prefix, and
    a URL its scheme's. A URL's path is the route's base, https:// its TLS
    (verified against the system's CAs; `upstreams` entries set the rest).

    Raises:
        ConfigError: one line naming the flag and the value.
    """
    what = f"--upstream {text!r}"
    equals, colon = text.find("="), text.find(":")
    cut = equals if equals >= 0 and (colon < 0 or equals < colon) else colon
    if cut <= 0 or not text[cut + 1 :].strip():
        raise ConfigError(f"{what} must look like {UPSTREAM_FORMS}, e.g. users=127.0.0.1:8001")
    prefix = "/" + normalize_prefix(text[:cut].strip(), what)
    written = text[cut + 1 :].strip()
    if text[cut] == ":" and "://" in written:
        raise ConfigError(f"{what}: write a URL target as {text[:cut]}={written}")
    no_port = f"has no port and no app has the prefix {prefix}"
    target = parse_any(written, app_ports.get(prefix), what, no_port)
    return RouteSpec(prefix, (target.address,), True, "--upstream", tls=target.tls, base=target.base, url=target.url)


def app_routes(settings: Settings, port_map: Mapping[str, PortEntry], host: str) -> list[RouteSpec]:
    """A route per TCP app of the config, on the port the last `serve` recorded, else the config's.

    The port map wins because it says what is running: an auto port, or the one
    port of `serve --aio`, whose apps expect their full path (no prefix stripping).
    The map's entries were checked when it was read (config/portentries.py).
    """
    routes = []
    tls = bool(settings.qkhyper.certfile)  # apps served with TLS are asked over https
    for spec in settings.qkhyper.apps:
        entry = port_map.get(spec.name)
        if _unix_socket(spec.name, spec.bind, port_map):
            continue
        port = entry.port if entry is not None else spec.port
        if port <= 0:
            continue  # an auto port that `serve` has not recorded yet
        strip = not (entry is not None and entry.aio)
        routes.append(RouteSpec("/" + spec.prefix, ((host, port),), strip, f"app {spec.name}", tls=tls))
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
    """Apps served with TLS are routed to over https, but the gateway has no client certificate.

    With `[qkhyper]` ca_certs the apps ask every client for a certificate
    (mutual TLS), which every request through the gateway would fail (502).

    Raises:
        ConfigError: naming the first route that goes to such an app.
    """
    if not tls_settings(settings.qkhyper).ca_certs:
        return
    for route in routes:
        if route.source.startswith("app "):
            raise ConfigError(
                f"{route.source} asks clients for a certificate ([qkhyper] ca_certs), and the gateway has none "
                "to present: end TLS at the gateway ([qkhyper.gateway] certfile) and keep the apps on loopback HTTP"
            )


def table_routes(upstreams: Mapping[str, UpstreamSettings], base_dir: Path | None = None) -> list[RouteSpec]:
    """The `upstreams` entries; one without targets holds only options (targets come from its app).

    Args:
        base_dir: where `ca_certs` resolves; None checks no file (config load).

    Raises:
        ConfigError: a malformed target, targets of one entry that differ in
            scheme or base path, or a `ca_certs` that cannot be read.
    """
    routes = []
    for prefix, upstream in upstreams.items():
        where = f"[qkhyper.gateway].upstreams {prefix!r}"
        targets = [parse_any(t, None, where) for t in upstream.targets]
        if len({(t.tls, t.base) for t in targets}) > 1:
            raise ConfigError(
                f"{where}: all targets of a route need the same scheme and base path, got {upstream.targets}"
            )
        first = targets[0] if targets else Target("", 0)
        ca_certs = upstream_ca_certs(upstream.ca_certs, base_dir, f"{where}.ca_certs")
        routes.append(
            RouteSpec(
                "/" + normalize_prefix(prefix, where),
                tuple(t.address for t in targets),
                True,
                "upstreams",
                upstream.upstream_idle_timeout,
                upstream.sse_idle_timeout,
                first.tls,
                UpstreamTlsSpec(upstream.tls_verify, ca_certs),
                first.base,
                upstream.rewrite_host,
                first.url,
                upstream.add_slashes,
                upstream.fastapi_redirect,
                upstream.redirect_cache,
                upstream.add_forwarded_host,
            )
        )
    return routes


def upstream_ca_certs(path: str, base_dir: Path | None, key: str) -> str:
    """`ca_certs` of an upstream, absolute, checked to hold a PEM certificate (when `base_dir` is given).

    Raises:
        ConfigError: naming `key` and the file.
    """
    if not path or base_dir is None:
        return path
    resolved = str(base_dir / path)
    try:
        ssl.create_default_context(cafile=resolved)
    except FileNotFoundError:
        raise ConfigError(f"{key}: {resolved} does not exist") from None
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            raise ConfigError(f"{key}: {resolved} holds no PEM certificate") from None
        raise ConfigError(f"{key}: cannot read {resolved}: {exc.strerror or exc}") from None
    return resolved


def merge_routes(apps: Iterable[RouteSpec], table: Iterable[RouteSpec], cli: Iterable[RouteSpec]) -> list[RouteSpec]:
    """Apps first; the config's `upstreams` and then `--upstream` add prefixes or move an app's.

    An `upstreams` entry without targets sets the options of the route that
    ends up with its prefix (an app's, or one `--upstream` gives: that is how
    `ca_certs` reaches `--upstream users=https://...`); `--upstream` moves a
    route and keeps its options.

    Raises:
        ConfigError: the same prefix twice within `upstreams` or `--upstream`,
            or options for a prefix no route has.
    """
    table, cli = list(table), list(cli)
    for layer in (table, cli):
        seen: set[str] = set()
        for route in layer:
            if route.prefix in seen:
                raise ConfigError(f"duplicate gateway prefix {route.prefix} ({route.source})")
            seen.add(route.prefix)
    merged = {route.prefix: route for route in apps}
    options = [route for route in table if not route.targets]
    for route in [*(r for r in table if r.targets), *cli, *options]:
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
            tls_options=below.tls_options,
            rewrite_host=below.rewrite_host,
            add_slashes=below.add_slashes,
            fastapi_redirect=below.fastapi_redirect,
            redirect_cache=below.redirect_cache,
            add_forwarded_host=below.add_forwarded_host,
        )
    if below is None:
        raise ConfigError(f"[qkhyper.gateway].upstreams {route.prefix!r}: no targets and no app with that prefix")
    return dataclasses.replace(
        below,
        upstream_idle_timeout=route.upstream_idle_timeout,
        sse_idle_timeout=route.sse_idle_timeout,
        tls_options=route.tls_options,
        rewrite_host=below.rewrite_host if route.rewrite_host is None else route.rewrite_host,
        add_slashes=_own(route.add_slashes, below.add_slashes),
        fastapi_redirect=_own(route.fastapi_redirect, below.fastapi_redirect),
        redirect_cache=_own(route.redirect_cache, below.redirect_cache),
        add_forwarded_host=_own(route.add_forwarded_host, below.add_forwarded_host),
    )


def _own(value: bool | None, below: bool | None) -> bool | None:
    """An options-only entry's switch where it sets one, else the switch of the route below."""
    return below if value is None else value


def _trust_app(settings: Settings, route: RouteSpec) -> RouteSpec:
    """A route to an app served with TLS trusts the app's own certificate and keeps the client's Host.

    The app builds its public URLs from Host, as over plain HTTP; `upstreams`
    options for the prefix (`ca_certs`, `tls_verify`, `rewrite_host`) win.
    """
    if not (route.tls and route.source.startswith("app ")):
        return route
    trust = route.tls_options
    if trust == UpstreamTlsSpec():
        trust = UpstreamTlsSpec(True, str(settings.base_dir / settings.qkhyper.certfile))
    rewrite = False if route.rewrite_host is None else route.rewrite_host
    return dataclasses.replace(route, tls_options=trust, rewrite_host=rewrite)


def check_tls_options(routes: Iterable[RouteSpec]) -> None:
    """`tls_verify` and `ca_certs` of a route whose targets are plain HTTP would be ignored: say so.

    Raises:
        ConfigError: naming the prefix and where it goes.
    """
    for route in routes:
        if not route.tls and route.tls_options != UpstreamTlsSpec():
            raise ConfigError(
                f"[qkhyper.gateway].upstreams {route.prefix!r}: tls_verify and ca_certs apply to https:// targets, "
                f"and the route goes to {route.describe().partition(' -> ')[2]}"
            )


def gateway_options(
    settings: Settings, upstreams: Sequence[str] = (), port_map: Mapping[str, PortEntry] | None = None
) -> GatewayOptions:
    """Everything a gateway worker needs, resolved in the parent (routes, ports, settings).

    Args:
        port_map: the checked entries of a running serve's port map (`read_port_map`).

    Raises:
        ConfigError: duplicate prefixes, malformed upstreams, no route at all,
            an app on a unix socket with no route elsewhere, an app that wants a
            client certificate, an unreadable `ca_certs`.
    """
    cfg = settings.qkhyper.gateway
    port_map = port_map or {}
    apps = app_routes(settings, port_map, cfg.default_upstream)
    app_ports = {route.prefix: route.targets[0][1] for route in apps}
    cli = [parse_upstream(text, app_ports) for text in upstreams]
    table = table_routes(cfg.upstreams, settings.base_dir)
    check_unix_apps(settings, port_map, [*table, *cli])
    routes = merge_routes(apps, table, cli)
    check_tls_apps(settings, routes)
    check_tls_options(routes)
    routes = [_trust_app(settings, route) for route in routes]
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
