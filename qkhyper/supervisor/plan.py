"""What `serve` will run: units of work derived from the settings and the CLI.

A *unit* is one listening socket and the workers that share it: one app, or
all selected apps in `--aio` mode. `ChildSpec` is what a worker process is told
(over argv, as JSON), so the child never re-reads or re-validates the config.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib.util
import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config.environ import AppEnvironment, app_environment, shared_environment
from ..config.listeners import unix_path
from ..config.load import did_you_mean
from ..config.model import Address, AppSpec, BuiltinOptions, EdgeLimits, Settings, WorkerLimits, tls_settings
from ..config.workers import strictest, worker_limits
from ..errors import ConfigError, UsageError
from ..tls import ServerTls, for_child, password_env, server_tls
from .policy import beat_interval
from .unixsock import UnixSocket


@dataclass(frozen=True, slots=True)
class AppRef:
    name: str
    target: str
    prefix: str  # "" when the app is served at the root of its own port


# Messages the gateway's and static's servers queue for the proxy (Hypercorn's `max_app_queue_size`,
# uvicorn's `ws_max_queue`): with ws_max_message_size, a WebSocket whose upstream stopped reading
# holds at most (EDGE_QUEUE + 1) messages in the worker until send_timeout ends it (the servers'
# own defaults are 10 and 32: 512 MiB at 16 MiB a message).
EDGE_QUEUE = 4


@dataclass(frozen=True, slots=True)
class ChildSpec:
    label: str
    apps: list[AppRef]
    base_dir: str
    backend: str
    worker_class: str
    hypercorn: dict[str, Any]
    trusted: list[str]
    ready_timeout: float
    docs_assets: str
    # Set for qkhyper's own servers (gateway, static): the one app is a factory
    # called with these options, and served without the user-app middlewares.
    options: BuiltinOptions | None = None
    debug: bool = False  # --debug: qkhyper's own debug lines from the worker too
    limits: EdgeLimits = field(default_factory=EdgeLimits)  # header size/count/timeout, h2c: for every server
    beat_interval: float = 0.0  # seconds between heartbeats from the event loop (policy.beat_interval); 0 = none
    request_limit: int = 0  # report the request count at once on reaching it; set per worker at spawn
    title: str = ""  # the worker's process title ("qkhyper: users worker 2"); set per worker at spawn
    # Checked by the parent (qkhyper/tls.py); the password is not here but in the worker's environment.
    tls: ServerTls | None = None
    log_format: str = "text"  # [qkhyper] log_format: "json" makes the worker's own log lines JSON objects
    metrics: bool = False  # count requests for the supervisor's /metrics (qkhyper's own servers only)

    def encode(self) -> str:
        """The spec as one argv word. Pickle, so the frozen settings arrive as the same classes;
        the parent writes it for its own child, so nothing untrusted is ever unpickled."""
        return base64.b64encode(pickle.dumps(self)).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> ChildSpec:
        spec = pickle.loads(base64.b64decode(text))
        if not isinstance(spec, cls):
            raise TypeError(f"not a ChildSpec: {type(spec).__name__}")
        return spec


@dataclass(frozen=True, slots=True)
class Unit:
    label: str
    prefixes: list[str]
    host: str
    port: int
    workers: int
    child: ChildSpec
    # The app's variables (config/environ.py): set in the worker's environment at exec,
    # never in `child`, which travels in argv where `ps` shows it to every local user.
    env: dict[str, str] = field(default_factory=dict, repr=False)
    unix: UnixSocket | None = None  # `bind = "unix:..."`: listen there instead of host:port
    limits: WorkerLimits = field(default_factory=WorkerLimits)  # recycling and the watchdog


@dataclass(frozen=True, slots=True)
class ServePlan:
    units: list[Unit]
    graceful_timeout: float
    ready_timeout: float
    port_map: str
    source: str = ""  # the config file (Settings.source), recorded in the port map
    passed: dict[str, int] = field(default_factory=dict)  # unit label -> fd systemd passed (activation.py)
    server: str = "serve"  # which command runs it: serve, gateway or static (status, the control socket's name)
    control_socket: str = ""  # where `qkhyper status/restart/...` reach this supervisor; "" for none
    metrics: Address | None = None  # where /metrics, /healthz and /readyz listen (metrics_host, metrics_port)


ALL = "all"  # `serve all`: every app


def select_apps(settings: Settings, names: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """The app names to run, in config order; unknown names are a usage error.

    `all` alone means every app, as the older framework's `runserver all` did,
    unless the config has an app named `all`: then it is that app.
    """
    known = [spec.name for spec in settings.qkhyper.apps]
    if not known:
        raise ConfigError(f"{settings.source}: no [[qkhyper.apps]] to serve")
    if list(names) == [ALL] and ALL not in known:
        names = []
    for name in [*names, *exclude]:
        if name not in known:
            raise UsageError(f"unknown app {name!r}{did_you_mean(name, known)}; apps: {', '.join(known)}")
    chosen = [n for n in known if (not names or n in names) and n not in exclude]
    if not chosen:
        raise UsageError("no app left to serve after --exclude")
    return chosen


@dataclass(frozen=True)
class Selection:
    """What `serve` was asked to run: `serve [APP ...] [--exclude ...] [--aio] [--port] [--workers]`."""

    names: Sequence[str] = ()
    exclude: Sequence[str] = ()
    aio: bool = False
    port: int | None = None
    workers: int | None = None


EVERY_APP = Selection()


def with_debug(plan: ServePlan) -> ServePlan:
    units = [dataclasses.replace(u, child=dataclasses.replace(u.child, debug=True)) for u in plan.units]
    return dataclasses.replace(plan, units=units)


def app_environments(
    settings: Settings, names: Sequence[str], inherited: Mapping[str, str] | None = None
) -> dict[str, AppEnvironment]:
    """Each named app's variables, env files read now (`inherited`: qkhyper's own environment)."""
    inherited = os.environ if inherited is None else inherited
    return {name: app_environment(settings, settings.app(name), inherited) for name in names}


def make_plan(settings: Settings, selection: Selection = EVERY_APP) -> ServePlan:
    """Turn settings plus the command line's selection into units.

    Raises:
        UsageError: unknown app, `--port` with several apps, missing backend.
        ConfigError: a missing or malformed env file, --aio apps needing two values of one variable,
            TLS files that do not load ([qkhyper] certfile, keyfile, ...).
    """
    qk = settings.qkhyper
    check_backend(qk.backend, qk.worker_class)
    tls = server_tls(tls_settings(qk), settings.base_dir, "qkhyper")
    names, aio, port, workers = selection.names, selection.aio, selection.port, selection.workers
    chosen = select_apps(settings, names, selection.exclude)
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if port is not None and not 0 <= port <= 65535:  # the CLI checks too; this is for API callers
        raise UsageError(f"--port must be a port number 0-65535, got {port}")

    def unit(
        label: str,
        prefixes: list[str],
        port: int,
        count: int,
        refs: list[AppRef],
        limits: WorkerLimits,
        env: dict[str, str],
        unix: UnixSocket | None = None,
    ) -> Unit:
        child = dataclasses.replace(child_spec(settings, label, refs, tls=tls), beat_interval=beat_interval(limits))
        return Unit(label, prefixes, qk.host, port, count, child, {**env, **password_env(tls)}, unix, limits)

    specs = [settings.app(n) for n in chosen]
    envs = app_environments(settings, chosen)
    if aio:
        refs = [AppRef(s.name, s.app, s.prefix) for s in specs]
        limits = strictest([worker_limits(qk, s) for s in specs])
        unit_port = qk.gateway.port if port is None else port
        env = shared_environment(envs).values
        units = [unit("aio", [s.prefix for s in specs], unit_port, workers or 1, refs, limits, env)]
    else:
        if port is not None and len(specs) > 1:
            raise UsageError("--port needs exactly one app (or --aio); name the app: qkhyper serve NAME --port P")
        units = [
            unit(
                s.name,
                [s.prefix],
                s.port if port is None else port,
                workers or s.workers,
                [AppRef(s.name, s.app, "")],
                worker_limits(qk, s),
                envs[s.name].values,
                unix_socket(settings, s) if port is None else None,  # --port moves the app to TCP
            )
            for s in specs
        ]
    return ServePlan(
        units=units,
        graceful_timeout=settings.graceful_timeout,
        ready_timeout=qk.ready_timeout,
        port_map=str(settings.port_map_path()),
        source=settings.source,
        control_socket=str(settings.control_socket_path("serve") or ""),
        metrics=metrics_address(settings, qk.metrics_port),
    )


def metrics_address(settings: Settings, port: int) -> Address | None:
    """Where a supervisor serves its metrics: `metrics_host` and the command's own port (0: off).

    `serve` uses `[qkhyper] metrics_port`, `gateway` and `static` the key of
    their own table, so the three can run from one config without a clash,
    as each gunicorn or nginx has its own status port.
    """
    return (settings.qkhyper.metrics_host, port) if port else None


def unix_socket(settings: Settings, spec: AppSpec) -> UnixSocket | None:
    """The app's unix socket, its path resolved from the config's folder; None for TCP apps."""
    path = unix_path(spec.bind)
    if path is None:
        return None
    return UnixSocket(str(settings.base_dir / path), spec.socket_mode, spec.socket_owner, spec.socket_group)


def child_spec(
    settings: Settings,
    label: str,
    refs: list[AppRef],
    options: BuiltinOptions | None = None,
    *,
    tls: ServerTls | None = None,
) -> ChildSpec:
    qk = settings.qkhyper
    return ChildSpec(
        label=label,
        apps=refs,
        base_dir=str(settings.base_dir),
        backend=qk.backend,
        worker_class=qk.worker_class,
        hypercorn=settings.hypercorn,
        trusted=qk.forwarded_allow_ips,
        ready_timeout=qk.ready_timeout,
        docs_assets=qk.docs_assets,
        options=options,
        limits=qk.edge_limits(),
        tls=for_child(tls),
        log_format=qk.log_format,
    )


def builtin_plan(
    settings: Settings, label: str, factory: str, options: BuiltinOptions, *, port: int, workers: int
) -> ServePlan:
    """A plan for one of qkhyper's own servers: `factory(options)` builds the app.

    Raises:
        UsageError: missing backend, bad worker count.
        ConfigError: its table's TLS files do not load (`[qkhyper.gateway]` certfile, ...).
    """
    qk = settings.qkhyper
    check_backend(qk.backend, qk.worker_class)
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    tls = server_tls(tls_settings(options.settings), settings.base_dir, f"qkhyper.{label}")
    child = child_spec(settings, label, [AppRef(label, factory, "")], options, tls=tls)
    # The proxy's own limit also bounds what the server takes from a client, in one setting;
    # and the server holds at most EDGE_QUEUE of those for a proxy whose upstream is slow.
    queue = min(int(child.hypercorn.get("max_app_queue_size", EDGE_QUEUE)), EDGE_QUEUE)
    server = {
        **child.hypercorn,
        "websocket_max_message_size": options.settings.ws_max_message_size,
        "max_app_queue_size": queue,
    }
    limits = worker_limits(qk)
    metrics = metrics_address(settings, options.settings.metrics_port)
    child = dataclasses.replace(
        child, hypercorn=server, beat_interval=beat_interval(limits), metrics=metrics is not None
    )
    return ServePlan(
        units=[Unit(label, [""], qk.host, port, workers, child, password_env(tls), limits=limits)],
        graceful_timeout=settings.graceful_timeout,
        ready_timeout=qk.ready_timeout,
        port_map="",  # the port map records the apps, not qkhyper's own servers
        source=settings.source,
        server=label,
        control_socket=str(settings.control_socket_path(label) or ""),
        metrics=metrics,
    )


def check_backend(backend: str, worker_class: str) -> None:
    if backend == "uvicorn":
        if importlib.util.find_spec("uvicorn") is None:
            raise UsageError("the uvicorn backend is not installed: pip install 'qkhyper[uvicorn]'")
        if worker_class == "trio":
            raise UsageError("--worker-class trio needs --backend hypercorn (uvicorn runs on asyncio)")
