"""Believing X-Forwarded-* headers from trusted peers (the gateway).

Neither uvicorn nor Hypercorn maps `X-Forwarded-Prefix`; this middleware does,
for both backends: the prefix becomes `root_path` *and* is put back in front of
`path` and `raw_path`, because Starlette builds `request.url` and redirect
`Location`s from `path` alone and strips `root_path` for routing. The result is
that FastAPI's docs and trailing-slash redirects work through the gateway.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from .types import ASGIApp, Receive, Scope, Send

_SCHEMES = {"http": ("http", "ws"), "https": ("https", "wss"), "ws": ("http", "ws"), "wss": ("https", "wss")}
_PREFIX_RE = re.compile(r"^(/[A-Za-z0-9_~!$&'()*+,;=:@.-]+)+$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.:\[\]_-]+$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedPeers:
    """`forwarded_allow_ips`: addresses or networks, `unix`, or `*` for everyone.

    A connection on a unix socket has no client address (`scope["client"]` is
    None on both servers); `unix` trusts those peers, as gunicorn does: they
    are local processes, gated by the socket's mode, like peers on 127.0.0.1.
    The entries were checked when the config was loaded.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        entries = list(entries)
        self.everyone = "*" in entries
        self.unix = "unix" in entries
        named = [e for e in entries if e not in ("*", "unix")]
        self.networks: list[Network] = [ipaddress.ip_network(e, strict=False) for e in named]
        self._seen: dict[object, bool] = {}  # per-request lookups of the same few peers

    def __contains__(self, host: object) -> bool:
        if self.everyone:
            return True
        if host is None:
            return self.unix
        known = self._seen.get(host)
        if known is None:
            known = self._lookup(host)
            if len(self._seen) < 4096:
                self._seen[host] = known
        return known

    def _lookup(self, host: object) -> bool:
        try:
            address = ipaddress.ip_address(str(host))
        except ValueError:
            return False
        return any(address in network for network in self.networks)


class ProxyHeadersMiddleware:
    def __init__(self, app: ASGIApp, trusted: TrustedPeers) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if (
            scope["type"] in ("http", "websocket")
            and (client[0] if client else None) in self.trusted
            and any(name.startswith(b"x-forwarded-") for name, _ in scope["headers"])
        ):
            scope = apply_forwarded(scope, self.trusted)
        await self.app(scope, receive, send)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    values = [v.decode("latin-1") for k, v in headers if k.lower() == name]
    return ",".join(values) if values else None


def apply_forwarded(scope: Scope, trusted: TrustedPeers) -> Scope:
    """A copy of `scope` with the forwarded client, scheme, host and prefix applied."""
    headers = list(scope.get("headers", []))
    scope = {**scope}
    forwarded_for = _header(headers, b"x-forwarded-for")
    if forwarded_for:
        scope["client"] = (client_from_chain(forwarded_for, trusted), 0)
    proto = (_header(headers, b"x-forwarded-proto") or "").split(",")[0].strip().lower()
    if proto in _SCHEMES:
        scope["scheme"] = _SCHEMES[proto][scope["type"] == "websocket"]
    host = (_header(headers, b"x-forwarded-host") or "").split(",")[0].strip()
    if host and _HOST_RE.match(host):
        headers = [(k, v) for k, v in headers if k.lower() != b"host"] + [(b"host", host.encode())]
        scope["headers"] = headers
    prefix = clean_prefix(_header(headers, b"x-forwarded-prefix"))
    if prefix:
        _prefix(scope, prefix)
    return scope


def _prefix(scope: Scope, prefix: str) -> None:
    """Mount `scope` (a copy) under `prefix`: root_path gets it, path and raw_path keep the full path."""
    scope["root_path"] = prefix + scope.get("root_path", "")
    scope["path"] = prefix + scope["path"]
    if scope.get("raw_path") is not None:
        scope["raw_path"] = prefix.encode() + scope["raw_path"]


class RootPathMiddleware:
    """The config's `root_path`, the same on both servers: as if a proxy had stripped that prefix.

    uvicorn puts `root_path` in front of `path`, Hypercorn does not, so
    neither server is given the key; this applies uvicorn's (and the ASGI
    spec's) reading on both. It runs outside ProxyHeadersMiddleware, where the
    server's own root_path would be, so X-Forwarded-Prefix still goes in front.
    """

    def __init__(self, app: ASGIApp, root_path: str) -> None:
        self.app = app
        self.root_path = root_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope}
            _prefix(scope, self.root_path)
        await self.app(scope, receive, send)


def client_from_chain(chain: str, trusted: TrustedPeers) -> str:
    """The right-most address in X-Forwarded-For that is not a trusted proxy."""
    hops = [hop.strip() for hop in chain.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else ""


def clean_prefix(value: str | None) -> str:
    """A safe `/a/b` prefix from the header, or "" if it is absent or suspicious."""
    if not value:
        return ""
    prefix = value.split(",")[-1].strip().rstrip("/")
    if not _PREFIX_RE.match(prefix) or any(seg in (".", "..") for seg in prefix.split("/")):
        return ""
    return prefix
