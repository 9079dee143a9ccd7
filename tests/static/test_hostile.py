"""Every hostile path of RELIABILITY.md §3.2 against a real server: the 404 of a missing file.

Same status, same headers that matter, same body, and no byte of anything
outside the root (or of a dotfile inside it). Targets are sent raw.
"""

from __future__ import annotations

import pytest

from tests.static.conftest import DOTFILE, SECRET, Site, raw_request

MISSING = b"/no-such-file.txt"
HOSTILE = [
    # CVE-2024-23334 (aiohttp follow_symlinks), CVE-2025-69226 (existence oracle)
    b"/../secret.txt",
    b"/../../etc/passwd",
    b"/../../nonexistent",
    b"/sub/../../secret.txt",
    b"/..%2fsecret.txt",
    b"/..%2f..%2fetc%2fpasswd",
    # CVE-2018-3712 (serve): %2e and %2f, any case
    b"/%2e%2e/secret.txt",
    b"/%2E%2E/secret.txt",
    b"/%2e%2E/%2e%2e/etc/passwd",
    b"/..%2Fsecret.txt",
    b"/%2fsecret.txt",
    b"/sub%2f..%2f..%2fsecret.txt",  # ".." after an encoded slash
    # CVE-2023-29159 (starlette commonprefix): sibling folder sharing the root's name prefix
    b"/../dist-secret/x.txt",
    b"/%2e%2e/dist-secret/x.txt",
    # starlette #981, HTTP.jl JLSEC-2026-612, hono: drives, UNC, backslashes
    b"/C:/x",
    b"/c%3a%5cwindows%5cwin.ini",
    b"/%5c..%5c..%5cetc%5cpasswd",
    b"/admin%5Csecret.txt",
    b"/..%5csecret.txt",
    b"/..\\secret.txt",
    b"/\\\\host\\share",
    b"//host/share",
    b"//secret.txt",
    b"//etc/passwd",
    # NUL, dotfiles (hono /./.env), Windows device names (werkzeug GHSA-hgf8-39gv-g3f2)
    b"/%00",
    b"/a%00.html",
    b"/index.html%00",
    b"/./.env",
    b"/.env",
    b"/.git/config",
    b"/sub/.htaccess",
    b"/CON",
    b"/aux.txt",
    b"/NUL",
    b"/com1.js",
    # gixy alias_traversal, trailing dot, tomcat-style
    b"/static../secret.txt",
    b"/index.html.",
    b"/..;/secret.txt",
    # symlinks leaving the root: file and folder (live-server, superstatic, hapi)
    b"/link-out",
    b"/link-out.txt",
    b"/dir-out/secret.txt",
    b"/root-link/etc/passwd",
    # loops, ENAMETOOLONG, file as directory, FIFO, double encoding
    b"/loop-a",
    b"/loop-a/x",
    b"/" + b"a" * 4096,
    b"/" + b"a" * 300 + b"/x",
    b"/index.html/x",
    b"/index.html/",
    b"/fifo",
    b"/%252e%252e/%252e%252e/secret.txt",
    b"/%252e%252e%252fsecret.txt",
    b"/%zz",
]


@pytest.fixture(scope="module")
def missing(site: Site) -> tuple[int, bytes, str]:
    response = raw_request(site.port, MISSING)
    assert response.status == 404
    return response.status, response.body, response.headers["content-type"]


@pytest.mark.parametrize("target", HOSTILE, ids=lambda t: t.decode("latin-1")[:60])
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_hostile_path_is_plain_404(site: Site, missing: tuple[int, bytes, str], target: bytes, method: bytes) -> None:
    response = raw_request(site.port, target, method)
    status, body, ctype = missing
    assert response.status == status
    assert response.headers["content-type"] == ctype
    assert response.body == (body if method == b"GET" else b"")
    assert SECRET not in response.body and DOTFILE not in response.body


@pytest.mark.parametrize("target", [b"/../../etc/passwd", b"/%2e%2e/secret.txt", b"/.env", b"/link-out"])
def test_hostile_path_with_accept_encoding_and_range(site: Site, target: bytes) -> None:
    """Negotiation and Range never run before containment: still the same 404."""
    headers = [(b"Accept-Encoding", b"br, gzip"), (b"Range", b"bytes=0-3")]
    response = raw_request(site.port, target, headers=headers)
    assert (response.status, response.body) == (404, b'{"error": "not found"}')


@pytest.mark.parametrize("encoding", [b"br", b"gzip", b"br, gzip", b"*"])
def test_symlinked_sibling_is_never_served(site: Site, encoding: bytes) -> None:
    """CVE-2024-42367: `evil.js` is fine, `evil.js.br`/`.gz` point outside: send `evil.js` itself."""
    response = raw_request(site.port, b"/evil.js", headers=[(b"Accept-Encoding", encoding)])
    assert response.status == 200
    assert response.body == b"EVIL-JS-BUT-INSIDE\n"
    assert "content-encoding" not in response.headers
    assert "vary" not in response.headers  # no usable sibling, so nothing varies
    assert SECRET not in response.body


@pytest.mark.parametrize(
    ("target", "body"),
    [
        (b"/%252e%252e.txt", b"LITERAL-PERCENT-NAME\n"),  # decoded once, names the literal file
        (b"/link-in.js", b"console.log('app');\n"),  # a symlink that stays inside is fine
        (b"/.well-known/security.txt", b"Contact: mailto:security@example.com\n"),
    ],
)
def test_allowed_lookalikes(site: Site, target: bytes, body: bytes) -> None:
    response = raw_request(site.port, target)
    assert (response.status, response.body) == (200, body)
