"""Header policy decided by a file's name: Content-Type and Cache-Control.

MIME types come from qkhyper's own table for the types a web frontend uses:
`mimetypes` reads the Windows registry and `/etc/mime.types`, and on some
machines answers `text/plain` for `.js` (Pylons/pyramid#3570), which browsers
refuse for module scripts. `mimetypes` is only the fallback for other names.

Cache-Control, in order:

- HTML: `no-cache`. Every deploy changes `index.html`, and it names the
  fingerprinted assets, so it must always be revalidated (vercel/serve#258).
- Fingerprinted names: `public, max-age=31536000, immutable`. A new build
  gives a changed file a new name, so the old name never changes.
- Anything else (`favicon.ico`, `robots.txt`, the manifest): `no-cache`. Such
  a file may change on any deploy; with an ETag, revalidating costs a 304.
  (`max-age=0, must-revalidate` would mean the same to browsers; `no-cache`
  is shorter and also binds shared caches.)
"""

from __future__ import annotations

import mimetypes
import re

DEFAULT_TYPE = "application/octet-stream"
NO_CACHE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"

_UTF8 = "; charset=utf-8"
TYPES: dict[str, str] = {
    ".html": "text/html" + _UTF8,
    ".htm": "text/html" + _UTF8,
    ".js": "text/javascript" + _UTF8,
    ".mjs": "text/javascript" + _UTF8,
    ".cjs": "text/javascript" + _UTF8,
    ".css": "text/css" + _UTF8,
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/x-icon",
    ".txt": "text/plain" + _UTF8,
    ".xml": "application/xml",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".pdf": "application/pdf",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
}

# webpack / CRA: `main.3f2a1b9c.js`, `2.3f2a1b9c.chunk.js`, `main.3f2a1b9c.js.map`.
_WEBPACK = re.compile(r".\.([0-9a-f]{8,})\.[A-Za-z0-9.]+$")
# Vite / Rollup: `index-VtGafirs.js`, `index-VtGafirs.js.map`: 8 url-safe base64 characters.
_VITE = re.compile(r".-([A-Za-z0-9_-]{8})\.[A-Za-z0-9]+(?:\.map)?$")


def extension(name: str) -> str:
    """The lower-cased last suffix, `""` for none (dotfiles have none)."""
    stem, dot, ext = name.lstrip(".").rpartition(".")
    return "." + ext.lower() if dot and stem and ext else ""


def content_type(name: str) -> str:
    """Content-Type for a file name: own table first, then `mimetypes`.

    A name `mimetypes` reads as compressed (`x.tar.gz`, `app.js.br` asked for
    directly) is sent as bytes: labelling it with the inner type and no
    Content-Encoding would make a browser render the compressed bytes.
    """
    known = TYPES.get(extension(name))
    if known is not None:
        return known
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if guessed is None or encoding is not None:
        return DEFAULT_TYPE
    return guessed + _UTF8 if guessed.startswith("text/") else guessed


def is_fingerprinted(name: str) -> bool:
    """Does the name carry a build hash, so its content can never change?

    Heuristics against ordinary names that happen to fit the patterns: a
    webpack hash must not be all digits (`report.20240101.pdf` is a date),
    and a Vite hash must not read as a word, lower-case or capitalised
    (`site-settings.json`, `App-Download.js`) or be all digits. A real hash
    fails these checks about once in a thousand builds; it is then only
    revalidated, while a false match would pin a changing file for a year.
    """
    webpack = _WEBPACK.search(name)
    if webpack is not None and not webpack.group(1).isdigit():
        return True
    vite = _VITE.search(name)
    return vite is not None and _looks_random(vite.group(1))


def _looks_random(token: str) -> bool:
    if token.isdigit():
        return False
    tail = token[1:]
    return not (token[0].isalpha() and tail.isalpha() and tail.islower())


def cache_control(name: str, content_type_: str) -> str:
    """Cache-Control for a file (see the module docstring for the three kinds)."""
    if content_type_.startswith("text/html"):
        return NO_CACHE
    return IMMUTABLE if is_fingerprinted(name) else NO_CACHE
