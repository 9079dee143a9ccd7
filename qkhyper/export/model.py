"""What to deploy, as plain data: the config turned into units, ports, env, probes, grace and routes.

Every renderer (kubernetes.py, compose.py, systemd.py) reads this and
nothing else, so a number such as the grace period is decided once, here.
The gateway's routes come from the gateway's own builder
(`gateway.routes.gateway_options`), fed the same `--upstream` arguments the
gateway container is started with: what the export says the gateway does is
what `qkhyper gateway` computes from those arguments, not a re-derivation.

The only inputs besides the settings are `Facts`: what `build` found on disk
(env-file variable names, the one-file build, the static root), so this
module does no I/O of its own beyond the route builder's certificate checks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..config.model import AppSpec, RouteSpec, Settings, authority
from ..config.targets import parse_api_target
from ..config.workers import worker_limits
from ..errors import ConfigError, UsageError
from ..gateway.routes import gateway_options

# Where the image holds the config's folder; containers start there (Containerfile WORKDIR).
WORKDIR = "/app"
# An app with an auto port (port = 0) gets this one in a container: each container has
# its own network namespace, so apps need not differ.
AUTO_PORT = 8000
# Seconds between "stop sending me traffic" and SIGTERM. Endpoints are removed from
# Services asynchronously to the pod's termination (Kubernetes docs, "Pod Lifecycle",
# termination of Pods), so the pod sleeps in preStop while kube-proxy and ingress
# controllers catch up; the same margin covers lifespan shutdown after the drain.
DRAIN_MARGIN = 5
# A supervisor's own resident memory, added to its workers' for a container's memory.
SUPERVISOR_MB = 64
DEFAULT_REPLICAS = 2
# The trust list `forwarded_allow_ips` has by default (config/model.py).
LOOPBACK_TRUST = ["127.0.0.1", "::1", "unix"]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")

_LABEL_BAD = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class Facts:
    """What `build` read from disk for the plan (tests give their own)."""

    env_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # env file as configured -> names
    pyz: str = ""  # the one-file build, relative to the config's folder, when it exists
    static: bool = True  # the static root exists, so static is deployed
    python: str = "/usr/bin/python3"  # systemd units: the interpreter qkhyper runs under
    python_version: str = "3.11"  # the image's base: the one-file build is built for one minor version
    version: str = "0.1.0"  # qkhyper's, installed into the image


@dataclass(frozen=True, slots=True)
class Memory:
    """Container memory from `max_rss_mb`: the supervisor recycles a worker at that size."""

    request_mb: int  # the workers at their limit, plus the supervisor
    limit_mb: int  # one worker more: a roll starts the replacement before the old one drains


@dataclass(frozen=True, slots=True)
class Probe:
    """How an orchestrator asks a unit whether it works.

    With a metrics port the supervisor answers `/readyz` (503 while starting and
    draining) and `/healthz` (503 while an app has no ready worker); without
    one, the only thing that exists is the listening port, so a TCP connect.
    """

    port: int
    ready_path: str = ""  # "" = TCP probe of `port`
    live_path: str = ""
    startup_seconds: float = 60.0  # [qkhyper] ready_timeout: how long a start may take


@dataclass(frozen=True, slots=True)
class SecretFile:
    """A file the user fills in and the container reads at `path`: an env file or a TLS key."""

    name: str  # the Secret's name (a DNS label)
    path: str  # absolute, in the container
    key: str  # the file's key in the Secret (Kubernetes) and its name under secrets/ (Compose)
    names: tuple[str, ...] = ()  # env files: the variable names found, never their values
    shown: str = ""  # as configured, relative to the config's folder


@dataclass(frozen=True, slots=True)
class Unit:
    """One thing to run: an app, the gateway or static."""

    name: str  # service / deployment name, a DNS label: also the host name others reach it by
    component: str  # "app", "gateway" or "static"
    args: tuple[str, ...]  # after the image's entrypoint (`qkhyper`)
    port: int
    workers: int
    replicas: int
    grace: int  # seconds from SIGTERM (or preStop) to SIGKILL
    probe: Probe
    env: dict[str, str] = field(default_factory=dict)  # the app's `env` table
    settings_env: dict[str, str] = field(default_factory=dict)  # QKHYPER_* the container needs
    files: tuple[SecretFile, ...] = ()
    memory: Memory | None = None
    app: str = ""  # the config's app name
    # systemd's ListenStream= for this app on one machine: HOST:PORT or a unix path;
    # "" for an auto port (port = 0), which nothing can bind ahead of qkhyper.
    listen: str = ""


@dataclass(frozen=True, slots=True)
class Route:
    """One row of the gateway's route table as exported: where a prefix goes and with which switches."""

    prefix: str
    service: str  # the unit it goes to by name, "" for a target outside the export
    port: int
    target: str  # the target as `qkhyper gateway` prints it
    add_slashes: bool
    fastapi_redirect: bool


@dataclass(frozen=True, slots=True)
class Deployment:
    """Everything a renderer needs."""

    project: str
    image: str
    source: str  # the config file, or "bundled demo"
    config_name: str  # file name of the config inside WORKDIR; "" for the bundled demo
    apps: tuple[Unit, ...]
    gateway: Unit
    static: Unit | None
    routes: tuple[Route, ...]
    writable: tuple[str, ...]  # folders, relative to WORKDIR, qkhyper writes (port map, control sockets)
    secrets: tuple[SecretFile, ...]  # every SecretFile once, in order
    facts: Facts
    base_dir: str  # the config's folder on this machine (systemd's WorkingDirectory)

    @property
    def units(self) -> tuple[Unit, ...]:
        return (*self.apps, self.gateway, *((self.static,) if self.static else ()))


def dns_label(name: str) -> str:
    """An app name as a DNS-1035 label (RFC 1035; what Kubernetes Service names must be).

    App names may hold '_', '.' and capitals; Services may not, and Compose
    service names become host names on the project's network the same way.
    """
    label = _LABEL_BAD.sub("-", name.lower()).strip("-")
    if not label or not label[0].isalpha():
        label = f"app-{label}".rstrip("-")
    return label[:63].rstrip("-")


def grace_seconds(graceful_timeout: float) -> int:
    """terminationGracePeriodSeconds / stop_grace_period / TimeoutStopSec: the drain plus DRAIN_MARGIN."""
    return math.ceil(graceful_timeout) + DRAIN_MARGIN


def memory(max_rss_mb: int, workers: int) -> Memory | None:
    """Requests and limits from `max_rss_mb`; None when it is 0 (off), as a limit would be a guess."""
    if max_rss_mb <= 0:
        return None
    return Memory(workers * max_rss_mb + SUPERVISOR_MB, (workers + 1) * max_rss_mb + SUPERVISOR_MB)


def parse_replicas(items: list[str], names: list[str]) -> dict[str, int]:
    """`--replicas APP=N ...`; APP is an app's name, `gateway` or `static`.

    Raises:
        UsageError: naming the item, for an unknown name or an N that is not 0 or more.
    """
    found: dict[str, int] = {}
    for item in items:
        name, sep, count = item.partition("=")
        if not sep or name not in names:
            known = ", ".join(names)
            raise UsageError(f"--replicas {item!r}: {name!r} is not one of {known} (write APP=N)")
        if not count.isascii() or not count.isdigit():
            raise UsageError(f"--replicas {item!r}: N must be a whole number, 0 or more")
        found[name] = int(count)
    return found


def probe(port: int, metrics_port: int, ready_timeout: float) -> Probe:
    if metrics_port:
        return Probe(metrics_port, "/readyz", "/healthz", ready_timeout)
    return Probe(port, startup_seconds=ready_timeout)


def _settings_env(settings: Settings, metrics_port: int, app: bool) -> dict[str, str]:
    """QKHYPER_* a container needs on top of the config it finds in the image.

    The metrics listener must face the pod network for the kubelet's probes.
    Apps behind a gateway in another container see its address, not
    127.0.0.1; with the default trust list they would ignore its
    X-Forwarded-Prefix (and FastAPI's docs would break), so they trust the
    network they are on, which only the gateway and the ingress reach.
    """
    qk = settings.qkhyper
    env = {}
    if settings.config_file is not None:
        env["QKHYPER_CONFIG"] = f"{WORKDIR}/{settings.config_file.name}"
    if metrics_port:
        env["QKHYPER_METRICS_HOST"] = "0.0.0.0"
    if app and qk.forwarded_allow_ips == LOOPBACK_TRUST:
        env["QKHYPER_FORWARDED_ALLOW_IPS"] = "*"
    return env


def in_image(path: str) -> str:
    """A path of the config (relative to its folder) as the container sees it."""
    return path if path.startswith("/") else f"{WORKDIR}/{path.removeprefix('./')}"


def _env_files(shown: list[str], facts: Facts) -> tuple[SecretFile, ...]:
    """An env file becomes a Secret mounted where the config expects the file, so qkhyper reads it as usual.

    Mounting the file (not `envFrom`) keeps the precedence of README "Per-app
    environment": the app's `env` over its env file over `[qkhyper] env_file`.
    """
    files = []
    for path in shown:
        if path:
            key = path.rpartition("/")[2].lstrip(".") or "env"
            name = dns_label(f"{path.removeprefix('./').lstrip('.')}-env-file")
            files.append(SecretFile(name, in_image(path), key, facts.env_names.get(path, ()), path))
    return tuple(files)


def plan(settings: Settings, image: str, replicas: Mapping[str, int], facts: Facts, project: str) -> Deployment:
    """The deployment of `settings`, for every target.

    Raises:
        ConfigError: two apps whose names make the same DNS label, or one that
            takes `gateway` or `static`; anything the gateway's route builder refuses.
    """
    qk = settings.qkhyper
    grace = grace_seconds(settings.graceful_timeout)
    apps = []
    for spec in qk.apps:
        port = spec.port or AUTO_PORT
        name = dns_label(spec.name)
        limits = worker_limits(qk, spec)
        apps.append(
            Unit(
                name,
                "app",
                ("serve", spec.name, "--host", "0.0.0.0", "--port", str(port)),
                port,
                spec.workers,
                replicas.get(spec.name, DEFAULT_REPLICAS),
                grace,
                probe(port, qk.metrics_port, qk.ready_timeout),
                dict(spec.env),
                _settings_env(settings, qk.metrics_port, True),
                _env_files([qk.env_file, spec.env_file], facts),
                memory(limits.max_rss_mb, spec.workers),
                spec.name,
                _listen(qk.host, spec),
            )
        )
    _check_names([unit.name for unit in apps], [spec.name for spec in qk.apps])
    gateway, routes = _gateway(settings, apps, replicas, grace)
    static = _static(settings, gateway, replicas, grace) if facts.static else None
    secrets = {(f.name, f.key): f for unit in (*apps, gateway) for f in unit.files}
    return Deployment(
        project,
        image,
        settings.source,
        settings.config_file.name if settings.config_file else "",
        tuple(apps),
        gateway,
        static,
        routes,
        _writable(settings),
        tuple(secrets.values()),
        facts,
        str(settings.base_dir),
    )


def _listen(host: str, spec: AppSpec) -> str:
    if spec.bind.startswith("unix:"):
        return spec.bind.removeprefix("unix:")
    if not spec.port:
        return ""
    return str(spec.port) if host in ("", "0.0.0.0") else authority(host, spec.port)


def _check_names(labels: list[str], names: list[str]) -> None:
    seen: dict[str, str] = {"gateway": "the gateway", "static": "static"}
    for label, name in zip(labels, names, strict=True):
        if label in seen:
            raise ConfigError(f"app {name!r}: its service name {label!r} is taken by {seen[label]}; rename the app")
        seen[label] = f"app {name!r}"


def upstream_args(apps: tuple[Unit, ...] | list[Unit], settings: Settings) -> list[str]:
    """`--upstream PREFIX=SERVICE:PORT` per app: the gateway reaches each app by its service's name.

    The short name resolves in the pod's own namespace through the cluster
    DNS search path (Kubernetes docs, "DNS for Services and Pods"), and on
    the Compose project's network by service name, so one form serves both
    and survives `kustomize edit set namespace`. Apps served with TLS are
    asked over https://, as `qkhyper gateway` does on one machine.
    """
    scheme = "https://" if settings.qkhyper.certfile else ""
    prefixes = {spec.name: spec.prefix for spec in settings.qkhyper.apps}
    return [f"{prefixes[unit.app]}={scheme}{unit.name}:{unit.port}" for unit in apps]


def _gateway(
    settings: Settings, apps: list[Unit], replicas: Mapping[str, int], grace: int
) -> tuple[Unit, tuple[Route, ...]]:
    gw = settings.qkhyper.gateway
    upstreams = upstream_args(apps, settings)
    options = gateway_options(settings, upstreams, {})
    by_host = {unit.name: unit for unit in apps}
    routes = tuple(_route(route, settings, by_host) for route in options.routes)
    args = ["gateway", "--host", "0.0.0.0", "--port", str(gw.port)]
    for text in upstreams:
        args += ["--upstream", text]
    # Keys as a `kubernetes.io/tls` Secret names them (and cert-manager writes them).
    keys = {"tls.crt": gw.certfile, "tls.key": gw.keyfile, "ca.crt": gw.ca_certs}
    tls = [SecretFile("gateway-tls", in_image(path), key, shown=path) for key, path in keys.items() if path]
    unit = _server(settings, "gateway", args, gw.metrics_port, replicas, grace, tuple(tls))
    return unit, routes


def _server(
    settings: Settings,
    name: str,
    args: list[str],
    metrics_port: int,
    replicas: Mapping[str, int],
    grace: int,
    files: tuple[SecretFile, ...] = (),
) -> Unit:
    """The gateway's or static's unit: one worker a container (replicas scale them), `args[4]` its port."""
    port = int(args[4])
    return Unit(
        name,
        name,
        tuple(args),
        port,
        1,
        replicas.get(name, DEFAULT_REPLICAS),
        grace,
        probe(port, metrics_port, settings.qkhyper.ready_timeout),
        settings_env=_settings_env(settings, metrics_port, False),
        files=files,
    )


def _route(route: RouteSpec, settings: Settings, by_host: Mapping[str, Unit]) -> Route:
    host, port = route.targets[0]
    unit = by_host.get(host) if route.source == "--upstream" else None
    gw = settings.qkhyper.gateway
    return Route(
        route.prefix,
        unit.name if unit else "",
        port,
        route.describe().partition(" -> ")[2] or authority(host, port),
        route.switch("add_slashes", gw),
        route.switch("fastapi_redirect", gw),
    )


def _static(settings: Settings, gateway: Unit, replicas: Mapping[str, int], grace: int) -> Unit:
    """Static serves the frontend in the image; an API prefix aimed at loopback goes to the gateway's Service."""
    cfg = settings.qkhyper.static
    args = ["static", "--host", "0.0.0.0", "--port", str(cfg.port)]
    if _loopback(cfg.api_target):
        scheme = "https" if settings.qkhyper.gateway.certfile else "http"
        args += ["--api-target", f"{scheme}://{gateway.name}:{gateway.port}"]
    return _server(settings, "static", args, cfg.metrics_port, replicas, grace)


def _loopback(url: str) -> bool:
    """An api_target on this machine, which in a container means the container itself."""
    return bool(url) and parse_api_target(url, "[qkhyper.static] api_target").host in LOOPBACK_HOSTS


def _writable(settings: Settings) -> tuple[str, ...]:
    """Folders qkhyper writes: the port map's and the control sockets'; relative to the config's folder."""
    qk = settings.qkhyper
    paths = [qk.port_map, qk.control_socket] if qk.control_socket else [qk.port_map]
    folders = {p.rpartition("/")[0] or "." for p in paths}
    return tuple(sorted(folders))
