"""What qkhyper warns about before it serves: settings that reach further than a user may think.

One line each, printed once at start by `serve`, `gateway` and `static` and
by `check`: a listener beyond loopback, a trust list that believes everyone,
and Hypercorn keys that the uvicorn backend has no twin for. None of them
stops a start; each is a choice someone should have made on purpose.
`static_warnings` adds one for `static` (and `check`): an API target that is
this config's TLS gateway, which static's plain-HTTP proxy cannot reach.
"""

from __future__ import annotations

from .backends.serverkeys import ignored_by_uvicorn
from .config.listeners import exposure_warnings, is_loopback
from .config.model import Settings, tls_settings
from .config.targets import parse_api_target
from .errors import UsageError


def start_warnings(settings: Settings, *, listens_tcp: bool = True, proxy_headers: bool = True) -> list[str]:
    """The warnings for a start of these settings.

    Args:
        listens_tcp: some server of this start binds `host` (not only unix or passed sockets).
        proxy_headers: the servers believe X-Forwarded-* (`serve`, not the gateway or static).
    """
    qk = settings.qkhyper
    lines = exposure_warnings(qk.host, qk.forwarded_allow_ips, listens=listens_tcp, proxy_headers=proxy_headers)
    ignored = ignored_by_uvicorn(settings.hypercorn) if qk.backend == "uvicorn" else []
    if ignored:
        lines.append(f"backend uvicorn: these Hypercorn settings have no effect there: {', '.join(ignored)}")
    return lines


def static_warnings(settings: Settings) -> list[str]:
    """An http:// api_target aimed at this config's TLS gateway: every call would fail.

    A warning, not an error: the gateway at that port may be another one, run without TLS.
    """
    qk = settings.qkhyper
    if not tls_settings(qk.gateway).enabled or not qk.static.api_target:
        return []
    try:
        target = parse_api_target(qk.static.api_target, "api_target")
    except UsageError:
        return []  # static_options reports it
    host, port = target.address
    if target.tls or port != qk.gateway.port or not (is_loopback(host) or host == qk.host):
        return []
    return [
        f"static api_target {qk.static.api_target} is this config's gateway, which serves TLS, and static "
        f"proxies {qk.static.api_prefix} over plain HTTP: those requests will fail (README: TLS)"
    ]
