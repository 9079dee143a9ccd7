"""CORS origin rules (config/cors.py) as a table: which Origin headers each entry lets in, and what is refused."""

from __future__ import annotations

import re

import pytest

from qkhyper.config.cors import check_cors, origin_rules
from qkhyper.errors import ConfigError


def allowed(entries: list[str], origin: str) -> bool:
    """As Starlette decides: an exact origin, a full match of the regex, or "*"."""
    rules = origin_rules(entries, "cors_origins")
    return rules.every or origin in rules.exact or bool(rules.regex and re.fullmatch(rules.regex, origin))


@pytest.mark.parametrize(
    ("entry", "origin", "expected"),
    [
        ("https://app.example.com", "https://app.example.com", True),
        ("https://App.Example.com", "https://app.example.com", True),  # hosts are compared in lower case
        ("https://app.example.com", "http://app.example.com", False),  # another scheme is another origin
        ("https://app.example.com", "https://app.example.com:8443", False),
        ("http://localhost:5173", "http://localhost:5173", True),
        ("*.example.com", "https://app.example.com", True),
        ("*.example.com", "http://a.b.example.com:8080", True),
        ("*.example.com", "https://example.com", False),  # subdomains only
        ("*.example.com", "https://evil-example.com", False),  # whole labels only
        ("*.example.com", "https://app.example.com.evil.net", False),
        ("*.example.com", "https://appexample.com", False),
        ("*.example.com", "https://app.example.com/", False),  # an Origin never has a path
        ("*.example.com", "null", False),
        ("https://*.example.com", "https://app.example.com", True),
        ("https://*.example.com", "http://app.example.com", False),
        (".example.com", "https://example.com", True),  # Django's ALLOWED_HOSTS spelling: the domain too
        (".example.com", "https://shop.example.com", True),
        (".example.com", "https://notexample.com", False),
        ("*", "https://anything.test", True),
    ],
)
def test_which_origins_an_entry_lets_in(entry: str, origin: str, expected: bool) -> None:
    assert allowed([entry], origin) is expected


@pytest.mark.parametrize(
    "entry",
    [
        "app.example.com",
        "ftp://app.example.com",
        "https://app.example.com/path",
        "*example.com",
        "*.",
        "**.example.com",
        "https://*",
        "*.-bad-.com",
        "https://*.example.com:443/x",
        "",
    ],
)
def test_entries_that_are_no_origin_are_one_error(entry: str) -> None:
    with pytest.raises(ConfigError, match=rf"^qkhyper.gateway.cors_origins: {re.escape(repr(entry))} is not an origin"):
        check_cors([entry], False, "qkhyper.gateway")


def test_credentials_for_every_origin_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"cors_allow_credentials = true with cors_origins \"\*\" would let any site"):
        check_cors(["https://app.example.com", "*"], True, "qkhyper.gateway")
    assert check_cors(["*.example.com"], True, "qkhyper.gateway").regex is not None
