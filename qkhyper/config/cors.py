"""Which origins the gateway answers CORS for: exact origins and suffix patterns, checked at config load.

Pure: `origin_rules` turns `cors_origins` into what Starlette's
`CORSMiddleware` takes (exact origins, and one regular expression that it
full-matches against the `Origin` header), and raises `ConfigError` for an
entry that is not one of these forms:

    https://app.example.com     that origin exactly (scheme, host and port, as a browser sends it)
    http://localhost:5173
    *.example.com               any subdomain of example.com, over http or https, any port
    https://*.example.com       the same, https only
    .example.com                example.com itself and any subdomain (Django's ALLOWED_HOSTS spelling,
                                the older framework's habit)
    *                           every origin (never with credentials)

A pattern only ever matches whole DNS labels: `*.example.com` does not
match `evil-example.com` nor `example.com.evil.net`. The browser's part of
CORS (preflight, `Vary: Origin`, exposed headers) is Starlette's; these rules
decide only who is let in (Fetch standard, CORS protocol:
https://fetch.spec.whatwg.org/#http-cors-protocol).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_ORIGIN = re.compile(r"^(https?)://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:\d{1,5})?$")
_PATTERN = re.compile(r"^(?:(https?)://)?(\*\.|\.)([a-z0-9.-]+)$")
_PORT = r"(?::\d{1,5})?"


@dataclass(frozen=True, slots=True)
class OriginRules:
    """`allow_origins` and `allow_origin_regex` for Starlette's CORSMiddleware."""

    exact: tuple[str, ...]
    regex: str | None
    every: bool  # "*" was given


def origin_rules(origins: list[str], where: str) -> OriginRules:
    """The rules for `cors_origins`.

    Raises:
        ConfigError: naming `where` and the entry, for anything that is not an origin, a pattern or "*".
    """
    exact: list[str] = []
    patterns: list[str] = []
    every = False
    for entry in origins:
        text = entry.strip().lower()
        if text == "*":
            every = True
        elif _ORIGIN.match(text):
            exact.append(text)
        elif (match := _PATTERN.match(text)) and _DOMAIN.match(match.group(3)):
            scheme, kind, domain = match.groups()
            subdomains = rf"(?:{_LABEL}\.)+" if kind == "*." else rf"(?:{_LABEL}\.)*"
            patterns.append(rf"{scheme or 'https?'}://{subdomains}{re.escape(domain)}{_PORT}")
        else:
            raise ConfigError(
                f"{where}: {entry!r} is not an origin (https://app.example.com), "
                "a pattern (*.example.com, https://*.example.com, .example.com) or *"
            )
    regex = "|".join(f"(?:{p})" for p in patterns) or None
    return OriginRules(tuple(dict.fromkeys(exact)), regex, every)


def check_cors(origins: list[str], allow_credentials: bool, where: str) -> OriginRules:
    """`origin_rules`, refusing credentials for every origin.

    Raises:
        ConfigError: a malformed entry, or `cors_allow_credentials` with "*": any site could then
            read what a signed-in user's browser fetches from the apps.
    """
    rules = origin_rules(origins, f"{where}.cors_origins")
    if allow_credentials and rules.every:
        raise ConfigError(
            f'{where}.cors_allow_credentials = true with cors_origins "*" would let any site read '
            "what a signed-in user's browser fetches; list the origins instead"
        )
    return rules
