"""A resolved URL with every response header computed once: the unit the app caches.

Building a `Resource` happens once per URL (and again after a file changes), so
the per-request path only picks a variant, stats it and sends precomputed
header lists. Each variant is one file on disk: the file itself or a
precompressed sibling, with its own ETag.

ETags: a small file's comes from a hash of its content, since builds often
reset mtimes (SPEC §5; whitenoise#222); a large file's from its mtime, size
and inode. A sibling's ETag carries its encoding (`"…-br"`), so a cache
never confuses two encodings of one URL even if their bytes were equal.

`Accept-Ranges: bytes` is sent for large (streamed) files only: Range works
on every file, but resuming a download of at most 256 KiB is pointless, and
each header costs hypercorn (h11 validates every one) about 3% of a 1 KB
response.

`Vary: Accept-Encoding` goes on every response for a URL that has at least
one sibling, including the uncompressed variant, 304 and 206, because those
are the responses that vary. A URL without siblings never varies (nothing
is compressed on the fly), and saying so would only split shared caches.
"""

from __future__ import annotations

from dataclasses import dataclass

from .conditional import http_date
from .files import Found, Loaded, StatKey
from .mime import cache_control, content_type
from .negotiate import IDENTITY

Headers = list[tuple[bytes, bytes]]
NOSNIFF = (b"x-content-type-options", b"nosniff")
VARY = (b"vary", b"Accept-Encoding")
ACCEPT_RANGES = (b"accept-ranges", b"bytes")


@dataclass(frozen=True, slots=True)
class Variant:
    """One servable file of a resource, with its ready-made headers."""

    encoding: str
    path: str
    key: StatKey
    size: int
    small: bool
    etag: bytes
    last_modified: bytes | None
    mtime: int | None  # whole seconds behind Last-Modified; None when it is not sent
    base: Headers  # every 200/206 header except Content-Length
    full: Headers  # the 200 headers: base + Content-Length
    not_modified: Headers  # the 304 headers


@dataclass(frozen=True, slots=True)
class Resource:
    """What a raw path resolved to: the identity variant, maybe siblings."""

    identity: Variant
    variants: dict[str, Variant]
    encodings: tuple[str, ...]  # sibling encodings present, in preference order
    checked: float  # monotonic time of the resolution

    def pick(self, encoding: str) -> Variant:
        return self.variants.get(encoding, self.identity)


def make_resource(found: Found, checked: float) -> Resource:
    """Precompute every variant's headers for a found file."""
    ctype = content_type(found.name).encode("latin-1")
    cache = cache_control(found.name, ctype.decode("latin-1")).encode("latin-1")
    vary = len(found.files) > 1
    variants = {loaded.encoding: _variant(loaded, ctype, cache, vary) for loaded in found.files}
    encodings = tuple(enc for enc in variants if enc != IDENTITY)
    return Resource(variants[IDENTITY], variants, encodings, checked)


def _variant(loaded: Loaded, ctype: bytes, cache: bytes, vary: bool) -> Variant:
    suffix = "" if loaded.encoding == IDENTITY else "-" + loaded.encoding
    etag = f'"{loaded.digest}{suffix}"'.encode("ascii")
    last_modified = http_date(loaded.mtime)
    validators: Headers = [(b"etag", etag), (b"cache-control", cache)]
    if last_modified is not None:
        validators.append((b"last-modified", last_modified))
    if vary:
        validators.append(VARY)
    validators.append(NOSNIFF)
    base: Headers = [(b"content-type", ctype), *validators]
    if loaded.body is None:
        base.append(ACCEPT_RANGES)
    if loaded.encoding != IDENTITY:
        base.append((b"content-encoding", loaded.encoding.encode("ascii")))
    full = [*base, (b"content-length", str(loaded.size).encode("ascii"))]
    return Variant(
        encoding=loaded.encoding,
        path=loaded.path,
        key=loaded.key,
        size=loaded.size,
        small=loaded.body is not None,
        etag=etag,
        last_modified=last_modified,
        mtime=int(loaded.mtime) if last_modified is not None else None,
        base=base,
        full=full,
        not_modified=validators,
    )


def partial_headers(variant: Variant, start: int, end: int) -> Headers:
    """Headers of a 206 for the inclusive span `start`–`end`."""
    span = f"bytes {start}-{end}/{variant.size}".encode("ascii")
    length = str(end - start + 1).encode("ascii")
    return [*variant.base, (b"content-range", span), (b"content-length", length)]
