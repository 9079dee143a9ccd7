"""`mime.py` and `negotiate.py`: name-based headers and encoding choice (pure)."""

from __future__ import annotations

import pytest

from qkhyper.static.mime import IMMUTABLE, NO_CACHE, cache_control, content_type, extension, is_fingerprinted
from qkhyper.static.negotiate import choose, parse_accept_encoding

TYPES = [
    ("index.html", "text/html; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("APP.JS", "text/javascript; charset=utf-8"),
    ("mod.mjs", "text/javascript; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("data.json", "application/json"),
    ("app.js.map", "application/json"),
    ("logo.svg", "image/svg+xml"),
    ("prog.wasm", "application/wasm"),
    ("site.webmanifest", "application/manifest+json"),
    ("a.png", "image/png"),
    ("a.jpg", "image/jpeg"),
    ("a.jpeg", "image/jpeg"),
    ("a.gif", "image/gif"),
    ("a.webp", "image/webp"),
    ("a.avif", "image/avif"),
    ("favicon.ico", "image/x-icon"),
    ("robots.txt", "text/plain; charset=utf-8"),
    ("sitemap.xml", "application/xml"),
    ("f.woff", "font/woff"),
    ("f.woff2", "font/woff2"),
    ("f.ttf", "font/ttf"),
    ("noext", "application/octet-stream"),
    (".hidden", "application/octet-stream"),
    ("app.js.br", "application/octet-stream"),  # a sibling asked for directly: bytes
    ("dump.tar.gz", "application/octet-stream"),
    ("paper.pdf", "application/pdf"),
]


@pytest.mark.parametrize(("name", "expected"), TYPES)
def test_content_type(name: str, expected: str) -> None:
    assert content_type(name) == expected


@pytest.mark.parametrize(("name", "ext"), [("a.JS", ".js"), ("a", ""), (".env", ""), ("a.b.c", ".c"), ("a.", "")])
def test_extension(name: str, ext: str) -> None:
    assert extension(name) == ext


FINGERPRINTS = [
    ("index-VtGafirs.js", True),  # Vite / Rollup
    ("index-VtGafirs.js.map", True),
    ("vendor-a1B2_c-D.css", True),
    ("index-Q7mK2pXe.css", True),
    ("main.3f2a1b9c.js", True),  # webpack / CRA
    ("2.3f2a1b9c.chunk.js", True),
    ("main.3f2a1b9c.js.map", True),
    ("app.0123456789abcdef0123.js", True),
    ("index.js", False),
    ("robots.txt", False),
    ("site-settings.json", False),  # a word, not a hash
    ("App-Download.js", False),
    ("report-20240101.pdf", False),
    ("report.20240101.pdf", False),
    ("index-VtGafirs1.js", False),  # 9 characters
    ("index-VtGafi.js", False),
    ("main.3f2a1b9.js", False),  # 7 hex digits
    ("main.3F2A1B9C.js", False),
]


@pytest.mark.parametrize(("name", "expected"), FINGERPRINTS)
def test_is_fingerprinted(name: str, expected: bool) -> None:
    assert is_fingerprinted(name) is expected


CACHE = [
    ("index.html", NO_CACHE),
    ("page-VtGafirs.html", NO_CACHE),  # HTML is never immutable
    ("index-VtGafirs.js", IMMUTABLE),
    ("main.3f2a1b9c.css", IMMUTABLE),
    ("favicon.ico", NO_CACHE),
    ("app.js", NO_CACHE),
]


@pytest.mark.parametrize(("name", "expected"), CACHE)
def test_cache_control(name: str, expected: str) -> None:
    assert cache_control(name, content_type(name)) == expected


def test_parse_accept_encoding() -> None:
    assert parse_accept_encoding(b"gzip, br;q=0.5, x-gzip;q=0.2, *;q=0, zstd;q=bad, ;q=1") == {
        "gzip": 0.2,
        "br": 0.5,
        "*": 0.0,
    }


BOTH = ("br", "gzip")
CHOICES = [
    (None, BOTH, "identity"),
    (b"", BOTH, "identity"),
    (b"gzip, deflate, br, zstd", BOTH, "br"),
    (b"gzip, deflate, br", ("gzip",), "gzip"),
    (b"gzip", BOTH, "gzip"),
    (b"br;q=0, gzip", BOTH, "gzip"),
    (b"br;q=0, gzip;q=0", BOTH, "identity"),
    (b"br;q=0.5, gzip;q=0.8", BOTH, "gzip"),
    (b"br;q=0.8, gzip;q=0.8", BOTH, "br"),
    (b"*", BOTH, "br"),
    (b"*;q=0.1, br;q=0", BOTH, "gzip"),
    (b"identity", BOTH, "identity"),
    (b"deflate", BOTH, "identity"),
    (b"BR", BOTH, "br"),
    (b"x-gzip", BOTH, "gzip"),
    (b"br;q=2", BOTH, "identity"),  # malformed q: entry dropped
    (b"br;q=0.1234", BOTH, "identity"),
    (b"br, gzip", (), "identity"),
]


@pytest.mark.parametrize(("header", "available", "expected"), CHOICES)
def test_choose(header: bytes | None, available: tuple[str, ...], expected: str) -> None:
    assert choose(header, available) == expected
