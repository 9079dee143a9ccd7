"""The settings model: every table of `hypercorn.toml` as a frozen dataclass.

The field list of each class *is* the schema: the loader checks keys against
`dataclasses.fields()`, converts values by the field's declared type and builds
the environment names from the field names, so a key is spelled once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BACKENDS = ("hypercorn", "uvicorn")
WORKER_CLASSES = ("asyncio", "uvloop", "trio")
DOCS_ASSETS = ("local", "cdn")
# What every line qkhyper writes looks like: `label | text`, or one JSON object (README "Logs").
LOG_FORMATS = ("text", "json")
# The proxy's access line: Apache's "combined" layout plus route, upstream and time, or a JSON object.
ACCESS_LOG_FORMATS = ("combined", "json")
# What reads upstream responses (proxy/codec.py): llhttp through httptools when it is
# installed (auto), or h11, pure Python, always there.
UPSTREAM_PARSERS = ("auto", "httptools", "h11")


@dataclass(frozen=True, slots=True)
class AppSpec:
    """One `[[qkhyper.apps]]` entry."""

    name: str
    app: str
    prefix: str = ""
    port: int = 0
    workers: int = 1
    # Variables the worker gets in its environment before the app is imported
    # (README "Per-app environment": env beats env_file beats [qkhyper] env_file
    # beats what qkhyper inherited). Values never leave the parent by argv.
    env: dict[str, str] = field(default_factory=dict)
    env_file: str = ""  # dotenv file, relative to the config's folder
    # A unix socket instead of host:port: "unix:/run/qkhyper/users.sock".
    bind: str = ""
    socket_mode: int | None = None  # e.g. 0o660; None: as the umask leaves it
    socket_owner: str = ""  # user name or uid; "" leaves it as created
    socket_group: str = ""  # group name or gid
    # The app's own WorkerLimits; None takes the [qkhyper] value.
    max_requests: int | None = None
    max_requests_jitter: int | None = None
    max_rss_mb: int | None = None
    max_lifetime: float | None = None
    worker_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    """When the supervisor replaces a worker that still runs (SPEC §3, "Recycling and hangs").

    The first four recycle it by a roll (replacement ready first, then the old
    one drains), the way gunicorn's `max_requests` is used against slow leaks;
    `worker_timeout` replaces a worker whose event loop stopped answering.
    0 turns each one off. Keys of `[qkhyper]` and of each `[[qkhyper.apps]]`
    (the app's own value wins); the backends never see them.
    """

    max_requests: int = 0  # requests served, then recycled
    max_requests_jitter: int = 0  # each worker adds 0..jitter, so workers started together do not recycle together
    max_rss_mb: int = 0  # resident memory, sampled by the supervisor
    max_lifetime: float = 0.0  # seconds since it became ready
    worker_timeout: float = 60.0  # seconds without a heartbeat from its event loop, then stack dump and kill


MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """What the proxy core does with every request: timeouts, pool and size limits.

    `[qkhyper.gateway]` and `[qkhyper.static]` (for its API prefix) both hold
    these keys, with these defaults, and the worker receives the table as it
    is: a default is written here and nowhere else. README "Limits and
    timeouts" gives each one nginx's name for it.
    """

    connect_timeout: float = 5.0  # to open an upstream connection
    read_timeout: float = 60.0  # from the end of the request to the response head
    upstream_idle_timeout: float = 60.0  # longest silence between body chunks; 0 = off
    sse_idle_timeout: float = 0.0  # the same for text/event-stream responses; 0 = off (streams idle for minutes)
    client_body_timeout: float = 60.0  # longest silence between request body chunks, then 408
    send_timeout: float = 60.0  # longest a client (or a WebSocket peer) may take to accept a chunk; 0 = off
    pool_idle_timeout: float = 4.0  # below the 5 s keep-alive of hypercorn and uvicorn
    pool_max_idle: int = 64  # idle keep-alive connections kept per target
    max_body_size: int = 0  # bytes of a request body; 0 = unlimited
    ws_max_message_size: int = 16 * MIB  # one WebSocket message, either direction; over it: close 1009
    access_log: bool = False
    access_log_format: str = "combined"  # combined | json (ACCESS_LOG_FORMATS)
    # Keep a client's X-Request-ID if it is short and plain (else make one), send it upstream,
    # return it to the client and log it (README "What crosses the gateway"). false: the
    # header crosses like any other, and the proxy neither makes nor logs one.
    request_id: bool = True
    upstream_parser: str = "auto"  # auto | httptools | h11 (UPSTREAM_PARSERS); auto: httptools if installed


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """One entry of `[qkhyper.gateway].upstreams`: a list of targets, or a table.

    `"/billing" = ["h:9001", "h:9002"]` is short for `{ targets = [...] }`. A
    table without `targets` only sets options of an app's own route.
    """

    targets: list[str] = field(default_factory=list)
    upstream_idle_timeout: float | None = None  # None: the gateway's
    sse_idle_timeout: float | None = None
    # For https:// targets (README "TLS", "To upstreams"): check the upstream's certificate
    # and name (false: encrypt only), against ca_certs (PEM, relative to the config's
    # folder) instead of the system's CAs.
    tls_verify: bool = True
    ca_certs: str = ""
    # Send the target's host as Host instead of the client's (X-Forwarded-Host keeps the
    # client's). None: on for https:// targets, whose server checks the name it is asked
    # for against SNI; off for http:// and HOST:PORT, as before (apps build URLs from Host).
    rewrite_host: bool | None = None
    # The older gateway's per-route switches (EXTRA_PROXY); None: the [qkhyper.gateway] value.
    add_slashes: bool | None = None
    fastapi_redirect: bool | None = None
    redirect_cache: bool | None = None
    add_forwarded_host: bool | None = None


# The per-route switches of `upstreams` that default to a [qkhyper.gateway] key of the same name.
ROUTE_SWITCHES = ("add_slashes", "fastapi_redirect", "redirect_cache", "add_forwarded_host")


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The TLS keys of one server table, as written: `[qkhyper]` (the apps), `[qkhyper.gateway]`, `[qkhyper.static]`.

    Each server has its own, so the gateway can end HTTPS while the apps behind
    it stay on loopback HTTP. Relative paths resolve from the config's folder;
    `qkhyper/tls.py` checks the files in the parent and translates the keys for
    each backend. The tables hold these four keys themselves (`tls_settings`
    reads them), so the TOML stays flat: `certfile = ...` under `[qkhyper.gateway]`.
    """

    certfile: str = ""  # PEM: the certificate, then any intermediates
    keyfile: str = ""  # PEM private key of certfile
    keyfile_password: str = field(default="", repr=False)  # for an encrypted keyfile
    ca_certs: str = ""  # PEM CA bundle: clients must present a certificate signed by one (mutual TLS)

    @property
    def enabled(self) -> bool:
        return bool(self.certfile or self.keyfile or self.keyfile_password or self.ca_certs)


TLS_KEYS = ("certfile", "keyfile", "keyfile_password", "ca_certs")


def tls_settings(table: QkhyperSettings | GatewaySettings | StaticSettings) -> TlsSettings:
    """The TLS keys of one server table."""
    return TlsSettings(table.certfile, table.keyfile, table.keyfile_password, table.ca_certs)


@dataclass(frozen=True, slots=True)
class GatewaySettings(ProxySettings):
    """`[qkhyper.gateway]`: the reverse proxy (and every key of `ProxySettings`)."""

    port: int = 8000
    default_upstream: str = "127.0.0.1"
    add_slashes: bool = False
    fastapi_redirect: bool = False
    redirect_cache: bool = True  # --fastapi-redirect remembers where a redirect led (LRU, 1024 paths)
    add_forwarded_host: bool = True  # send X-Forwarded-Host (the client's Host) upstream
    upstreams: dict[str, UpstreamSettings] = field(default_factory=dict)
    fallback: str = ""  # HOST:PORT for paths no prefix matches ("" -> 404 JSON)
    cors_origins: list[str] = field(default_factory=list)  # origins and patterns: config/cors.py
    cors_allow_credentials: bool = False  # Access-Control-Allow-Credentials: true (cookies, auth); never with "*"
    cors_allow_methods: list[str] = field(default_factory=lambda: ["*"])  # answered to a preflight
    cors_allow_headers: list[str] = field(default_factory=lambda: ["*"])  # request headers a page may send
    cors_max_age: int = 600  # seconds a browser may cache a preflight's answer
    metrics_port: int = 0  # /metrics, /healthz, /readyz of `qkhyper gateway` on [qkhyper] metrics_host; 0 = off
    # TLS for clients of the gateway (see TlsSettings); all empty: plain HTTP.
    certfile: str = ""
    keyfile: str = ""
    keyfile_password: str = field(default="", repr=False)
    ca_certs: str = ""


@dataclass(frozen=True, slots=True)
class StaticSettings(ProxySettings):
    """`[qkhyper.static]`: the frontend server; `ProxySettings` apply to its API prefix."""

    port: int = 8080
    root: str = "./static"
    api_prefix: str = "/api"
    api_target: str = "http://127.0.0.1:8000"
    # The same three keys as an `upstreams` entry, for an https:// (or http://) api_target.
    api_tls_verify: bool = True
    api_ca_certs: str = ""  # PEM CAs the API's certificate is checked against; "" = the system's
    api_rewrite_host: bool | None = None  # None: on for an https:// api_target, off for http://
    metrics_port: int = 0  # /metrics, /healthz, /readyz of `qkhyper static` on [qkhyper] metrics_host; 0 = off
    # TLS for the static server (see TlsSettings); all empty: plain HTTP.
    certfile: str = ""
    keyfile: str = ""
    keyfile_password: str = field(default="", repr=False)
    ca_certs: str = ""


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """What every server qkhyper runs refuses before an app sees a request (SPEC §4).

    One value per limit with one meaning on both backends, so a worker is told
    these four numbers, not how each server spells them.
    """

    max_header_size: int = 65536  # bytes of request line + headers; more is 431
    max_headers: int = 100  # header lines; more is 431
    header_timeout: float = 10.0  # seconds from "waiting for a request" to its complete head
    h2c: bool = False  # honour `Upgrade: h2c` (Hypercorn only; uvicorn has no cleartext HTTP/2)


@dataclass(frozen=True, slots=True)
class QkhyperSettings:
    """`[qkhyper]`: how apps are served."""

    host: str = "127.0.0.1"
    backend: str = "hypercorn"
    worker_class: str = "uvloop"
    port_map: str = ".qkhyper/ports.json"
    # `serve`'s control socket (qkhyper status/restart/...); gateway and static use siblings
    # of it (Settings.control_socket_path). "" turns the control socket off.
    control_socket: str = ".qkhyper/control.sock"
    docs_assets: str = "local"
    log_format: str = "text"  # text | json (LOG_FORMATS): the supervisor's lines and its workers'
    # Prometheus /metrics, /healthz and /readyz of `serve` (README "Metrics"); 0 = off.
    # `gateway` and `static` have their own metrics_port in their tables, on the same host.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    # Peers whose X-Forwarded-* headers are believed (SPEC §3): addresses, networks,
    # "unix" (peers on a unix socket, local like 127.0.0.1) or "*" (everyone).
    forwarded_allow_ips: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1", "unix"])
    env_file: str = ""  # dotenv file every app gets (below each app's own env_file and env)
    # Seconds a child may take to import its app and finish lifespan startup.
    ready_timeout: float = 60.0
    # Edge limits for every server qkhyper runs (serve, gateway, static): see EdgeLimits.
    max_header_size: int = 65536
    max_headers: int = 100
    header_timeout: float = 10.0
    h2c: bool = False
    # Worker recycling and the watchdog, for every app without its own value: see WorkerLimits.
    max_requests: int = 0
    max_requests_jitter: int = 0
    max_rss_mb: int = 0
    max_lifetime: float = 0.0
    worker_timeout: float = 60.0
    # TLS for every app server of `serve` (and `serve --aio`) (see TlsSettings); all empty: plain HTTP.
    certfile: str = ""
    keyfile: str = ""
    keyfile_password: str = field(default="", repr=False)
    ca_certs: str = ""
    apps: list[AppSpec] = field(default_factory=list)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    static: StaticSettings = field(default_factory=StaticSettings)

    def edge_limits(self) -> EdgeLimits:
        return EdgeLimits(self.max_header_size, self.max_headers, self.header_timeout, self.h2c)


@dataclass(frozen=True, slots=True)
class Settings:
    """A loaded, validated configuration.

    `hypercorn` holds the top-level keys of the file, already checked against
    `hypercorn.config.Config`; they are applied to every app server.
    `base_dir` is where relative module paths and files resolve.
    """

    qkhyper: QkhyperSettings
    hypercorn: dict[str, Any]
    base_dir: Path
    source: str  # the file the settings came from, or "bundled demo"

    @property
    def graceful_timeout(self) -> float:
        return float(self.hypercorn.get("graceful_timeout", 3.0))

    def app(self, name: str) -> AppSpec:
        for spec in self.qkhyper.apps:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def config_file(self) -> Path | None:
        return None if self.source == "bundled demo" else Path(self.source)

    def port_map_path(self) -> Path:
        return self.base_dir / self.qkhyper.port_map

    def control_socket_path(self, server: str) -> Path | None:
        """Where the supervisor of `server` ("serve", "gateway" or "static") listens for control commands.

        `serve` uses `control_socket` itself; the gateway and static, which may run
        from the same config at the same time, use its siblings with their name
        added (`.qkhyper/control-gateway.sock`), so one setting places all three
        and `qkhyper status` finds each. None when `control_socket = ""`.
        """
        if not self.qkhyper.control_socket:
            return None
        path = self.base_dir / self.qkhyper.control_socket
        return path if server == "serve" else path.with_name(f"{path.stem}-{server}{path.suffix}")


Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class UpstreamTlsSpec:
    """How a route's https:// targets are checked; each worker makes one context of it per route."""

    verify: bool = True
    ca_certs: str = ""  # absolute path, read in the parent at start; "" = the system's CAs


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One row of the gateway's route table: `/prefix` -> targets, resolved in the parent.

    `strip` is False for `serve --aio` apps, which expect their full path. The
    timeouts are the route's own from `upstreams`, None for the gateway's.
    `tls` says the targets are https://; `tls_options` apply only then.
    """

    prefix: str
    targets: tuple[Address, ...]
    strip: bool = True
    source: str = "config"
    upstream_idle_timeout: float | None = None
    sse_idle_timeout: float | None = None
    tls: bool = False
    tls_options: UpstreamTlsSpec = UpstreamTlsSpec()
    base: str = ""  # put in front of every upstream path: "/v1"
    rewrite_host: bool | None = None  # Host is the target's, not the client's; None: for https:// targets
    url: bool = False  # the targets were written as http:// or https:// URLs
    # The route's own ROUTE_SWITCHES from `upstreams`; None: the gateway's (`switch`).
    add_slashes: bool | None = None
    fastapi_redirect: bool | None = None
    redirect_cache: bool | None = None
    add_forwarded_host: bool | None = None

    def switch(self, name: str, gateway: GatewaySettings) -> bool:
        """The route's value of a ROUTE_SWITCHES key, else the gateway's."""
        if name not in ROUTE_SWITCHES:
            raise KeyError(name)
        own: bool | None = getattr(self, name)
        return bool(getattr(gateway, name)) if own is None else own

    @property
    def sends_target_host(self) -> bool:
        return self.tls if self.rewrite_host is None else self.rewrite_host

    def describe(self) -> str:
        scheme = "https://" if self.tls else "http://" if self.url else ""
        where = ", ".join(f"{scheme}{authority(host, port)}{self.base}" for host, port in self.targets)
        extra = "" if self.strip else " (full path)"
        if self.tls and not self.tls_options.verify:
            extra += " (certificate not verified)"
        return f"{self.prefix or '(fallback)'} -> {where}{extra}"


def authority(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """What a gateway worker is told: its settings table as loaded, and the routes the parent resolved."""

    settings: GatewaySettings
    routes: tuple[RouteSpec, ...]
    fallback: Address | None
    docs_assets: str


@dataclass(frozen=True, slots=True)
class StaticOptions:
    """What a `qkhyper static` worker is told: its settings table, the absolute root, the API's address."""

    settings: StaticSettings
    root: str
    api_target: Address | None
    docs_assets: str = "local"
    api_tls: UpstreamTlsSpec | None = None  # for an https:// api_target; None: plain HTTP
    api_base: str = ""  # the api_target URL's path
    api_rewrite_host: bool = False


BuiltinOptions = GatewayOptions | StaticOptions
