"""`resolve.py`: which raw paths may name a file, SPA fallback, redirect targets (pure)."""

from __future__ import annotations

import pytest

from qkhyper.static.resolve import RequestPath, has_extension, parse_path, redirect_location, spa_fallback

ACCEPTED = [
    (b"/", (), True),
    (b"/index.html", ("index.html",), False),
    (b"/sub/", ("sub",), True),
    (b"/sub", ("sub",), False),
    (b"/assets/index-VtGafirs.js", ("assets", "index-VtGafirs.js"), False),
    (b"/a%20b.txt", ("a b.txt",), False),
    (b"/caf%C3%A9.txt", ("café.txt",), False),
    (b"/%252e%252e", ("%2e%2e",), False),  # decoded once: a literal name
    (b"/%252e%252e/%252e%252e/x", ("%2e%2e", "%2e%2e", "x"), False),
    (b"/.well-known/security.txt", (".well-known", "security.txt"), False),
    (b"/.well-known/", (".well-known",), True),
    (b"/console.js", ("console.js",), False),  # not the device CON
    (b"/conf", ("conf",), False),
    (b"/x?y=1", ("x",), False),
]


@pytest.mark.parametrize(("raw", "parts", "directory"), ACCEPTED)
def test_accepted(raw: bytes, parts: tuple[str, ...], directory: bool) -> None:
    assert parse_path(raw) == RequestPath(parts, directory)


REFUSED = [
    b"",
    b"index.html",  # no leading slash
    b"http://evil/x",
    b"/../etc/passwd",
    b"/../../etc/passwd",
    b"/sub/../../secret",
    b"/..",
    b"/.",
    b"/./.env",
    b"/.env",
    b"/.git/config",
    b"/sub/.htaccess",
    b"/.well-known/.secret",
    b"/sub/.well-known/x",  # only at the top
    b"/%2e%2e/%2e%2e/etc/passwd",
    b"/%2E%2E/secret",
    b"/%2e%2E/secret",
    b"/..%2fsecret",
    b"/..%2f..%2fetc%2fpasswd",
    b"/..%2Fsecret",
    b"/%2fsecret",
    b"/sub%2f..%2f..%2fsecret",
    b"/..%5csecret",
    b"/%5c..%5c..%5cetc%5cpasswd",
    b"/admin%5Csecret.txt",
    b"/..\\secret",
    b"/\\\\host\\share",
    b"//host/share",
    b"//secret",
    b"/a//b",
    b"/%00",
    b"/a%00.html",
    b"/index.html%00",
    b"/a%0a.txt",
    b"/C:/x",
    b"/c:",
    b"/c%3a%5cwindows%5cwin.ini",
    b"/c%3A/windows",
    b"/file.txt::$DATA",
    b"/CON",
    b"/con",
    b"/aux.txt",
    b"/NUL",
    b"/nul.tar.gz",
    b"/COM1",
    b"/lpt9.js",
    b"/sub/PRN",
    b"/CON%20",
    b"/index.html.",
    b"/index.html%20",
    b"/static../secret",
    b"/..;/secret",
    b"/%zz",
    b"/%2",
    b"/%ff%fe",  # not UTF-8
    b"/" + b"a" * 256,
    b"/" + b"a/" * 2100,
]


@pytest.mark.parametrize("raw", REFUSED)
def test_refused(raw: bytes) -> None:
    assert parse_path(raw) is None


def test_segment_limit_is_bytes_after_decoding() -> None:
    assert parse_path(b"/" + b"a" * 255) is not None
    assert parse_path(b"/" + b"%41" * 255) is not None
    assert parse_path(b"/" + b"%C3%A9" * 128) is None  # 256 bytes of UTF-8


@pytest.mark.parametrize(
    ("raw", "relpath", "name"),
    [(b"/", "index.html", "index.html"), (b"/sub/", "sub/index.html", "index.html"), (b"/a/b.js", "a/b.js", "b.js")],
)
def test_relpath_and_name(raw: bytes, relpath: str, name: str) -> None:
    target = parse_path(raw)
    assert target is not None
    assert (target.relpath, target.name) == (relpath, name)


HTML = b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
# connect-history-api-fallback's rules (htmlAcceptHeaders text/html and */*, the dot rule):
# one row per rule, see `resolve.spa_fallback`.
SPA = [
    (b"/users/42", HTML, True),
    (b"/users/42", b"TEXT/HTML", True),
    (b"/users/42", b"*/*", True),  # fetch() and curl navigate with */*
    (b"/users/42", b"application/json", False),
    (b"/users/42", b"", False),
    (b"/users/42", None, False),  # no Accept: not a navigation
    (b"/deep/route/", HTML, True),
    (b"/deep/route/", b"*/*", True),
    (b"/page.html", HTML, True),
    (b"/PAGE.HTML", HTML, True),
    (b"/users/jane.doe", HTML, True),  # a dotted route, asked by a browser
    (b"/v1.2", HTML, True),
    (b"/users/jane.doe", b"*/*", False),  # the dot rule: */* alone is no page request
    (b"/page.html", b"*/*", False),
    (b"/app.js", HTML, False),  # an asset type never becomes HTML
    (b"/app.js", b"*/*", False),
    (b"/assets/index-Old12345.js", HTML, False),
    (b"/favicon.ico", HTML, False),
    (b"/app.css", b"text/css,*/*;q=0.1", False),
    (b"/logo.png", b"image/avif,image/webp,*/*;q=0.8", False),
]


@pytest.mark.parametrize(("raw", "accept", "expected"), SPA)
def test_spa_fallback(raw: bytes, accept: bytes | None, expected: bool) -> None:
    target = parse_path(raw)
    assert target is not None
    assert spa_fallback(target, accept) is expected


@pytest.mark.parametrize(
    ("name", "expected"), [("app.js", True), ("users", False), (".x", False), ("a.b.c", True), ("v1.", True)]
)
def test_has_extension(name: str, expected: bool) -> None:
    assert has_extension(name) is expected


@pytest.mark.parametrize(
    ("raw", "query", "location"),
    [
        (b"/sub", b"", b"./sub/"),
        (b"/a/sub", b"x=1&y=2", b"./sub/?x=1&y=2"),
        (b"/a%20b", b"", b"./a%20b/"),
        (b"/caf%C3%A9", b"", b"./caf%C3%A9/"),
        (b"/%252e", b"", b"./%252e/"),
    ],
)
def test_redirect_location(raw: bytes, query: bytes, location: bytes) -> None:
    target = parse_path(raw)
    assert target is not None
    assert redirect_location(target, query) == location
