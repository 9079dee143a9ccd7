"""The Python API behind the CLI: what `qkhyper serve` and `qkhyper check` do.

Tests and embedding programs call these directly; the CLI only parses flags
and turns `QkhyperError` into one line and an exit code.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TextIO

import trio

from .advice import start_warnings, static_warnings
from .config.hypercorn_values import log_level
from .config.load import DEFAULT_NAME, DEMO_CONFIG, load_settings
from .config.model import GatewayOptions, Settings, StaticOptions, UpstreamTlsSpec, tls_settings
from .config.portmap import read_port_map
from .config.starter import STARTER
from .config.targets import parse_api_target
from .errors import ConfigError, QkhyperError, UsageError
from .gateway.routes import describe as describe_routes
from .gateway.routes import gateway_options, upstream_ca_certs
from .loader import load_app
from .logs import LogWriter, configure, format_table, make_writer
from .proctitle import set_title
from .supervisor.activation import passed_sockets
from .supervisor.notifier import notifier_from_env
from .supervisor.notify import watchdog_period
from .supervisor.plan import EVERY_APP, Selection, ServePlan, app_environments, builtin_plan, make_plan, with_debug
from .supervisor.reload import make_watch_plan
from .supervisor.run import Reloader, Systemd, supervise
from .tls import ServerTls, describe, server_tls, url_scheme

log = logging.getLogger("qkhyper")

STATIC_FACTORY = "qkhyper.static.app:create"
GATEWAY_FACTORY = "qkhyper.gateway.app:create"


def serve(
    settings: Settings,
    selection: Selection = EVERY_APP,
    *,
    reload: bool = False,
    reload_dirs: Sequence[str] = (),
    reload_settings: Callable[[], Settings] | None = None,
    stream: TextIO | None = None,
    debug: bool = False,
    notes: Sequence[str] = (),
) -> int:
    """Serve the selected apps until SIGINT/SIGTERM; return the exit code.

    Args:
        selection: which apps, and how (`--aio`, `--port`, `--workers`).
        reload: watch the apps' sources, the config and `reload_dirs`, and roll
            the affected workers on a change.
        reload_settings: how to re-read the settings when the config file
            changes (default: the same file, without CLI overrides).
        notes: lines logged before the start, such as `demo_notes`.

    Raises:
        QkhyperError: usage and config errors (exit 2), start failures (exit 1).
    """
    plan = make_plan(settings, selection)
    reread = reload_settings or _rereader(settings)

    def replan() -> ServePlan:
        return make_plan(reread(), selection)

    reloader = None
    if reload or reload_dirs:
        for folder in reload_dirs:
            if not Path(folder).is_dir():
                raise UsageError(f"--reload-dir {folder}: no such folder")
        watch_plan = make_watch_plan(plan, settings.base_dir, settings.config_file, reload_dirs)
        reloader = Reloader(watch_plan, replan)
    return _run("serve", plan, settings, reloader, stream, debug, replan=replan, notes=notes)


def demo_notes(settings: Settings) -> list[str]:
    """What `serve` says first when no config was found: it serves the demo, and how to write a config."""
    return [DEMO_NOTE] if settings.source == "bundled demo" else []


DEMO_NOTE = (
    "no hypercorn.toml here: serving the bundled demo (users, orders); "
    "`qkhyper init` writes a commented starter config to edit"
)


def init(folder: Path, *, force: bool = False) -> Path:
    """Write the commented starter config (`qkhyper init`) as `folder/hypercorn.toml`; return its path.

    Raises:
        UsageError: the file exists and `force` is false (exit 2).
    """
    path = folder / DEFAULT_NAME
    if path.exists() and not force:
        raise UsageError(f"{path} exists; not overwriting it (--force replaces it)")
    path.write_text(STARTER, encoding="utf-8")
    return path


def _rereader(settings: Settings) -> Callable[[], Settings]:
    """How `qkhyper reload` and `--reload` re-read the settings by default: the same file, without CLI overrides."""
    return lambda: load_settings(str(settings.config_file or DEMO_CONFIG))


def static(
    settings: Settings,
    *,
    workers: int = 1,
    stream: TextIO | None = None,
    debug: bool = False,
    reload_settings: Callable[[], Settings] | None = None,
) -> int:
    """Serve `[qkhyper.static]`: the built frontend, with its API prefix proxied.

    Args:
        reload_settings: how `qkhyper reload` re-reads the settings (default: the same file).

    Raises:
        UsageError: the root folder does not exist, or a bad --api-target (exit 2).
    """
    reread = reload_settings or _rereader(settings)
    return _run(
        "static",
        static_plan(settings, workers),
        settings,
        None,
        stream,
        debug,
        proxy_headers=False,
        warnings=static_warnings(settings),
        replan=lambda: static_plan(reread(), workers),
    )


def static_plan(settings: Settings, workers: int) -> ServePlan:
    options = static_options(settings)
    return builtin_plan(settings, "static", STATIC_FACTORY, options, port=settings.qkhyper.static.port, workers=workers)


def static_options(settings: Settings) -> StaticOptions:
    """What a static worker needs, resolved in the parent: the absolute root and the API's address.

    Raises:
        UsageError: the root folder does not exist, or a bad --api-target.
        ConfigError: an unreadable api_ca_certs, or TLS keys for a plain api_target.
    """
    cfg = settings.qkhyper.static
    root = (settings.base_dir / cfg.root).resolve()
    if not root.is_dir():
        raise UsageError(f"static root not found: {cfg.root} (resolved to {root})")
    if not cfg.api_target:
        return StaticOptions(cfg, str(root), None, settings.qkhyper.docs_assets)
    target = parse_api_target(cfg.api_target, "--api-target")
    tls = None
    if target.tls:
        ca_certs = upstream_ca_certs(cfg.api_ca_certs, settings.base_dir, "qkhyper.static.api_ca_certs")
        tls = UpstreamTlsSpec(cfg.api_tls_verify, ca_certs)
    elif cfg.api_ca_certs or not cfg.api_tls_verify:
        raise ConfigError(
            f"qkhyper.static: api_tls_verify and api_ca_certs apply to an https:// api_target, not {cfg.api_target}"
        )
    rewrite = target.tls if cfg.api_rewrite_host is None else cfg.api_rewrite_host
    return StaticOptions(cfg, str(root), target.address, settings.qkhyper.docs_assets, tls, target.base, rewrite)


def gateway(
    settings: Settings,
    *,
    upstreams: Sequence[str] = (),
    workers: int = 1,
    stream: TextIO | None = None,
    debug: bool = False,
    reload_settings: Callable[[], Settings] | None = None,
) -> int:
    """Serve `[qkhyper.gateway]`: the reverse proxy in front of the config's apps.

    Args:
        upstreams: `--upstream PREFIX:HOST[:PORT]` values, which move or add prefixes.
        reload_settings: how `qkhyper reload` re-reads the settings (default: the same file);
            the port map is read again too, so a reload follows apps that moved.

    Raises:
        ConfigError: duplicate prefixes, malformed upstreams, no route at all (exit 2).
    """
    ports = read_port_map(settings.port_map_path(), config=settings.source)
    options = gateway_options(settings, upstreams, ports.apps)
    plan = gateway_plan(settings, options, workers)
    reread = reload_settings or _rereader(settings)

    def replan() -> ServePlan:
        again = reread()
        ports = read_port_map(again.port_map_path(), config=again.source)
        for line in ports.warnings:
            log.warning("warning: %s", line)
        return gateway_plan(again, gateway_options(again, upstreams, ports.apps), workers)

    writer = make_writer(settings.qkhyper.log_format, stream or sys.stderr, ["gateway"])
    for line in ports.warnings:
        writer.line("qkhyper", f"warning: {line}")
    url = server_url(settings.qkhyper.host, settings.qkhyper.gateway.port, plan.units[0].child.tls)
    ends = ""
    if plan.units[0].child.tls:
        onward = "" if any(route.tls for route in options.routes) else "; the routes get plain HTTP"
        ends = f" (TLS ends here{onward})"
    writer.line("qkhyper", f"routes of {url}{ends}:")
    for line in describe_routes(options):
        writer.line("qkhyper", f"route {line}")
    return _run("gateway", plan, settings, None, stream, debug, writer, proxy_headers=False, replan=replan)


def gateway_plan(settings: Settings, options: GatewayOptions, workers: int) -> ServePlan:
    port = settings.qkhyper.gateway.port
    return builtin_plan(settings, "gateway", GATEWAY_FACTORY, options, port=port, workers=workers)


def server_url(host: str, port: int | None, tls: ServerTls | None) -> str:
    """The URL a server of the config answers on, as the config says (the ready table reads the socket).

    `port` None leaves it out (the apps, each on its own); 0 is a port chosen at start.
    """
    authority = f"[{host}]" if ":" in host else host
    where = "" if port is None else f":{port or '(free port)'}"
    return f"{url_scheme(tls)}://{authority}{where}"


def _run(
    command: str,
    plan: ServePlan,
    settings: Settings,
    reloader: Reloader | None,
    stream: TextIO | None,
    debug: bool,
    writer: LogWriter | None = None,
    *,
    proxy_headers: bool = True,
    warnings: Sequence[str] = (),
    replan: Callable[[], ServePlan] | None = None,
    notes: Sequence[str] = (),
) -> int:
    """Run `plan` under the supervisor, on the sockets systemd passed where it passed any, telling it how we are."""
    labels = [unit.label for unit in plan.units]
    writer = writer or make_writer(settings.qkhyper.log_format, stream or sys.stderr, labels)
    if debug:
        plan = with_debug(plan)
    configure(writer, log_level(settings.hypercorn, debug))
    problem = set_title(f"qkhyper: supervisor {command} {settings.source}")
    if problem is not None:
        log.warning("warning: process titles cannot be set (%s); ps shows python instead", problem)
    systemd = Systemd(notifier_from_env(os.environ), watchdog_period(os.environ, os.getpid()))
    passed = passed_sockets(os.environ, os.getpid(), [unit.label for unit in plan.units])
    plan = dataclasses.replace(plan, passed=passed.fds)
    listens_tcp = any(unit.label not in passed.fds and unit.unix is None for unit in plan.units)
    advice = start_warnings(settings, listens_tcp=listens_tcp, proxy_headers=proxy_headers)
    for line in notes:
        log.info("%s", line)
    for line in [*passed.warnings, *advice, *warnings]:
        log.warning("warning: %s", line)
    for label in passed.fds:
        log.info("%s: serving the socket systemd passed (fd %d)", label, passed.fds[label])
    try:
        return trio.run(partial(supervise, systemd=systemd, replan=replan), plan, writer, reloader)
    except BaseExceptionGroup as group:
        raise first_error(group) from None


def tls_lines(settings: Settings) -> list[str]:
    """`check`'s view of each server: its URL scheme and certificate, the files loaded as a start would.

    Raises:
        ConfigError: a TLS file of any table that does not load.
    """
    qk = settings.qkhyper
    lines = []
    for label, table, port in (
        ("apps", qk, None),
        ("gateway", qk.gateway, qk.gateway.port),
        ("static", qk.static, qk.static.port),
    ):
        where = "qkhyper" if label == "apps" else f"qkhyper.{label}"
        tls = server_tls(tls_settings(table), settings.base_dir, where)
        lines.append(f"{label + ':':<8} {server_url(qk.host, port, tls)} ({describe(tls)})")
    return lines


def log_line(settings: Settings) -> str:
    """`check`'s line on logging: log_format, then each proxy's access line (its format, or off) and request IDs."""
    qk = settings.qkhyper
    parts = [f"logs:    {qk.log_format}"]
    for label, table in (("gateway", qk.gateway), ("static API", qk.static)):
        access = f"access log {table.access_log_format}" if table.access_log else "access log off"
        parts.append(f"{label} {access}, request IDs {'on' if table.request_id else 'off'}")
    return "; ".join(parts)


def metrics_line(settings: Settings) -> str:
    """`check`'s view of the three metrics listeners: `serve 127.0.0.1:9101, gateway off, static off`."""
    qk = settings.qkhyper
    ports = {"serve": qk.metrics_port, "gateway": qk.gateway.metrics_port, "static": qk.static.metrics_port}
    host = f"[{qk.metrics_host}]" if ":" in qk.metrics_host else qk.metrics_host
    return ", ".join(f"{name} {f'{host}:{port}' if port else 'off'}" for name, port in ports.items())


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error worth reporting from a nursery's exception group."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            exc = first_error(exc)
        if isinstance(exc, QkhyperError):
            return exc
    return group


def check(settings: Settings, stream: TextIO | None = None) -> int:
    """Print the resolved plan and import every app; 0 when all import.

    Raises:
        QkhyperError: naming the first app that fails to import (exit 1), or a
            usage problem such as a missing backend (exit 2).
    """
    out = stream or sys.stdout
    qk = settings.qkhyper
    make_plan(settings)  # the same checks `serve` makes before it binds anything
    out.write(f"config:  {settings.source}\n")
    out.write(f"backend: {qk.backend} (worker class {qk.worker_class}), host {qk.host}\n")
    out.write(f"trusted: {', '.join(qk.forwarded_allow_ips) or '(nobody)'} (X-Forwarded-* believed from these peers)\n")
    control = settings.control_socket_path("serve")
    where = f"{control} (gateway, static: -gateway, -static beside it)" if control else 'off (control_socket = "")'
    out.write(f"control: {where}\n")
    out.write(f"metrics: {metrics_line(settings)}\n")
    for line in tls_lines(settings):
        out.write(line + "\n")
    out.write(log_line(settings) + "\n")
    for line in [*start_warnings(settings), *static_warnings(settings)]:
        out.write(f"warning: {line}\n")
    rows = [("app", "prefix", "listen", "workers", "target")]
    for spec in qk.apps:
        port = spec.bind or (str(spec.port) if spec.port else "auto")
        rows.append((spec.name, "/" + spec.prefix, port, str(spec.workers), spec.app))
    for line in format_table(rows):
        out.write(line + "\n")
    for name, env in app_environments(settings, [spec.name for spec in qk.apps]).items():
        if env.sources:  # names and where each came from; values never, they may be secrets
            names = ", ".join(f"{key} ({source})" for key, source in sorted(env.sources.items()))
            out.write(f"env {name}: {names}\n")
    for spec in qk.apps:
        load_app(spec.name, spec.app, settings.base_dir)
    out.write(f"ok: {len(qk.apps)} app(s) import\n")
    return 0
