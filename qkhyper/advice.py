"""What qkhyper warns about before it serves: settings that reach further than a user may think.

One line each, printed once at start by `serve`, `gateway` and `static` and
by `check`: a listener beyond loopback, a trust list that believes everyone,
and Hypercorn keys that the uvicorn backend has no twin for. None of them
stops a start; each is a choice someone should have made on purpose.
"""

from __future__ import annotations

from .backends.serverkeys import ignored_by_uvicorn
from .config.listeners import exposure_warnings
from .config.model import Settings


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
