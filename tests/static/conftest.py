"""A built-frontend tree full of traps, one `qkhyper static` serving it, and a raw HTTP client.

httpx normalises `..` and `%2e` and refuses some bytes, so hostile targets go
out on a plain socket exactly as written (`raw_request`).
"""

from __future__ import annotations

import gzip
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Qkhyper, free_port

SECRET = b"TOP-SECRET-OUTSIDE-THE-ROOT"
DOTFILE = b"DOTFILE-SECRET"
INDEX = b"<!doctype html><title>spa</title><p>INDEX</p>\n"
APP_JS = b"console.log('app');\n"
VITE_JS = b"export const answer = 42;\n" * 4
BR_BODY = b"BROTLI-BYTES-OF-THE-VITE-BUNDLE"
GZ_BODY = gzip.compress(VITE_JS, mtime=0)
FILES: dict[str, bytes] = {
    "index.html": INDEX,
    "page.html": b"<p>PAGE</p>\n",
    "app.js": APP_JS,
    "module.mjs": b"export default 1;\n",
    "prog.wasm": b"\x00asm\x01\x00\x00\x00",
    "logo.svg": b'<svg xmlns="http://www.w3.org/2000/svg"/>\n',
    "site.webmanifest": b'{"name": "demo"}\n',
    "data.json": b'{"a": 1}\n',
    "style.css": b"body { color: red; }\n",
    "robots.txt": b"User-agent: *\n",
    "assets/index-Q7mK2pXe.js": VITE_JS,
    "assets/index-Q7mK2pXe.js.br": BR_BODY,
    "assets/index-Q7mK2pXe.js.gz": GZ_BODY,
    "assets/main.3f2a1b9c.css": b"p { margin: 0; }\n",
    "sub/index.html": b"<p>SUB</p>\n",
    "no-index/data.txt": b"data\n",
    ".env": DOTFILE,
    ".git/config": DOTFILE,
    "sub/.htaccess": DOTFILE,
    ".well-known/security.txt": b"Contact: mailto:security@example.com\n",
    "%2e%2e.txt": b"LITERAL-PERCENT-NAME\n",
    "CON": DOTFILE,
    "aux.txt": DOTFILE,
    "NUL": DOTFILE,
    "com1.js": DOTFILE,
    "evil.js": b"EVIL-JS-BUT-INSIDE\n",
}


def build_tree(base: Path) -> Path:
    """`base/dist` is the root; `base` also holds the secrets it must never serve."""
    root = base / "dist"
    for name, data in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (base / "secret.txt").write_bytes(SECRET)
    (base / "dist-secret").mkdir()
    (base / "dist-secret" / "x.txt").write_bytes(SECRET)
    (base / "outside").mkdir()
    (base / "outside" / "secret.txt").write_bytes(SECRET)
    links = {
        "link-out": base / "secret.txt",
        "link-out.txt": base / "secret.txt",
        "dir-out": base / "outside",
        "root-link": Path("/"),
        "link-in.js": Path("app.js"),
        "loop-a": Path("loop-b"),
        "loop-b": Path("loop-a"),
        "evil.js.br": base / "secret.txt",
        "evil.js.gz": base / "secret.txt",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    os.mkfifo(root / "fifo")
    return root


@dataclass
class Site:
    root: Path
    port: int
    server: Qkhyper

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="package")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One `qkhyper static` (default backend) on the trap tree, for read-only tests.

    Its API target is a free port nobody listens on, so API paths get the proxy's 502.
    """
    base = tmp_path_factory.mktemp("static")
    root = build_tree(base)
    port = free_port()
    api = f"http://127.0.0.1:{free_port()}"
    server = Qkhyper(["static", "--root", str(root), "--port", str(port), "--api-target", api], cwd=base)
    try:
        server.wait_ready()
        yield Site(root, port, server)
    finally:
        server.stop()


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def raw_request(
    port: int, target: bytes, method: bytes = b"GET", headers: list[tuple[bytes, bytes]] | None = None
) -> RawResponse:
    """Send one request with the target byte for byte; read to EOF (Connection: close)."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers or []]
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), parsed, body)
