"""Pure request-path decisions for the static server: which file a URL may name.

Everything here works on the request target as the client sent it
(`scope["raw_path"]`), never on the server-decoded `path`: a server that
decodes `%2f` before we split would turn one segment into two, which is the
root cause of most static-server traversals (RELIABILITY.md §3.2). So the
raw path is split on `/` first and each segment is percent-decoded exactly
once; a segment that decodes to something no built frontend contains is
refused. Refused targets get the same 404 as a missing file, so the answer
never depends on what exists outside the root.

Refused, segment by segment:

- `.` and `..` and every other name starting with `.` (dotfiles such as
  `.env`, `.git`), except a first segment `.well-known`;
- empty segments (`//host/share`, `//secret`), except the trailing one of a
  directory URL (`/sub/`);
- `/`, `\\`, NUL and other control characters after decoding (`%2f`, `%5c`,
  `%00`), and malformed escapes (`%zz`) or invalid UTF-8;
- `:` anywhere: drive paths (`C:`), NTFS streams (`x::$DATA`) and URL
  schemes in a relative `Location`; built frontends never use it;
- Windows device names (`CON`, `aux.txt`, `COM1`…) and names ending in `.` or
  space, which Windows silently strips (`index.html.`): on Windows they hang
  reads or alias other files, on POSIX refusing them costs nothing;
- segments over 255 bytes and paths over 4 KiB (ENAMETOOLONG).

Double encoding stays literal: `%252e%252e` decodes once to the name `%2e%2e`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from .mime import TYPES, extension

MAX_SEGMENT = 255  # bytes, the usual NAME_MAX
MAX_PATH = 4096  # bytes of the raw target, the usual PATH_MAX
WELL_KNOWN = ".well-known"
INDEX = "index.html"

_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\:]")
_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"]
    + [f"{stem}{n}" for stem in ("COM", "LPT") for n in "0123456789¹²³"]
)


@dataclass(frozen=True, slots=True)
class RequestPath:
    """A request path that may name a file under the root.

    `parts` are decoded segments; `directory` is true for a trailing slash
    (including `/`), where the file is `parts/index.html`.
    """

    parts: tuple[str, ...]
    directory: bool

    @property
    def relpath(self) -> str:
        """The file to look for, relative to the root, `/`-separated."""
        return "/".join((*self.parts, INDEX) if self.directory else self.parts)

    @property
    def name(self) -> str:
        """The file name that decides MIME type and caching."""
        return INDEX if self.directory else self.parts[-1]


INDEX_PATH = RequestPath((INDEX,), directory=False)


def parse_path(raw_path: bytes) -> RequestPath | None:
    """The `RequestPath` for a raw request path, or None when no file may match it."""
    raw_path = raw_path.partition(b"?")[0]
    if not raw_path.startswith(b"/") or len(raw_path) > MAX_PATH:
        return None
    pieces = raw_path[1:].split(b"/")
    directory = pieces[-1] == b""
    if directory:
        pieces.pop()
    parts: list[str] = []
    for index, piece in enumerate(pieces):
        segment = _decode(piece)
        if segment is None or not _allowed(segment, first=index == 0):
            return None
        parts.append(segment)
    if not parts and not directory:
        return None
    return RequestPath(tuple(parts), directory)


def _decode(piece: bytes) -> str | None:
    if _BAD_ESCAPE.search(piece):
        return None
    data = unquote_to_bytes(piece) if b"%" in piece else piece
    if len(data) > MAX_SEGMENT:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _allowed(segment: str, *, first: bool) -> bool:
    if not segment or _FORBIDDEN.search(segment):
        return False
    if segment.startswith(".") and not (first and segment == WELL_KNOWN):
        return False
    if segment.endswith((".", " ")):
        return False
    stem = segment.split(".", 1)[0].rstrip(" ").upper()
    return stem not in _DEVICES


def has_extension(name: str) -> bool:
    """True for `app.js`, false for `users` and for a dotfile-like `.x` (no stem)."""
    return "." in name.lstrip(".")


def spa_fallback(target: RequestPath, accept: bytes | None) -> bool:
    """Serve `/index.html` for a missing path? Only for a page a browser navigates to.

    The rules of `connect-history-api-fallback` (which Vite's dev server used
    before Vite 5 and whose `htmlAcceptHeaders` default Vite kept in
    `htmlFallbackMiddleware`): the request accepts `text/html` or `*/*`
    (`fetch()` and `curl` send `*/*`), and its last segment has no extension
    (`/users/42`, `/deep/route/`). A dotted last segment (`/users/jane.doe`,
    `/v1.2`) is a route too when the request accepts `text/html` itself, as
    with the library's `disableDotRule` (browsers send `text/html` when they
    navigate, never `*/*` alone) — unless the extension is an asset type of
    `mime.TYPES`: a missing `/app.js` gets 404, not HTML that the browser
    would refuse as a module script ("Expected a JavaScript module script…",
    the stale-chunk error after a deploy). A missing Accept header is no
    navigation (the library skips it too). The method check (GET/HEAD) happens
    before any lookup.
    """
    if accept is None:
        return False
    accept = accept.lower()
    html = b"text/html" in accept
    if not (html or b"*/*" in accept):
        return False
    if target.directory or not has_extension(target.parts[-1]):
        return True
    return html and not is_asset(target.parts[-1])


def is_asset(name: str) -> bool:
    """A name whose extension `mime.TYPES` knows, other than a page (`.html`, `.htm`)."""
    ext = extension(name)
    return ext in TYPES and ext not in (".html", ".htm")


def redirect_location(target: RequestPath, query: bytes) -> bytes:
    """`Location` for a directory asked without its trailing slash: `./name/`.

    Relative, so it stays right behind a proxy that mounts us under another
    prefix or host (an absolute URL built from `Host` would leak the internal
    address); the segment is re-quoted from its decoded form, so nothing the
    client sent ends up in the header unescaped.
    """
    location = "./" + quote(target.parts[-1], safe="") + "/"
    return location.encode("ascii") + (b"?" + query if query else b"")
