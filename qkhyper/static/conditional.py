"""Pure conditional-request and Range logic (RFC 9110 §13 and §14).

`evaluate` turns the request's validators into one `Outcome`: 200, 206 with
a byte span, 304 or 416. Header values arrive as the bytes ASGI gives.

Decisions worth knowing:

- If-None-Match wins over If-Modified-Since (the date is then ignored), and
  uses the weak comparison: `W/"x"` matches `"x"`. `*` matches any file.
- Range is honoured for GET only (RFC 9110 §14.2: HEAD and others ignore it),
  and only as a single range. Several ranges get the full body with 200,
  which the RFC allows and which avoids multipart bodies and the "many small
  ranges" amplification (Starlette PR #3432).
- Numbers are ASCII digits matched by a bytes regex. Python's `int()` also
  accepts `1_0` and non-ASCII digits (aiohttp's CVE-2025-69225); such a
  header is malformed, and a malformed Range is ignored (200), as is an
  inverted one (`bytes=5-1`). `bytes=-0` and a start at or past the end are
  unsatisfiable (416).
- If-Range must match exactly: a strong ETag (a `W/` tag never matches) or
  the exact Last-Modified date; otherwise the full body is sent.
- If-Match / If-Unmodified-Since are not implemented: they guard writes, and
  this server has none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime

# A file's mtime at or before 1980-01-01: reproducible builds (Nix: 1, zip
# tools and SOURCE_DATE_EPOCH defaults: 315532800). Such a date says nothing
# about the content, and If-Modified-Since on it would answer 304 for a
# changed file (whitenoise#222), so no Last-Modified is sent for it.
MEANINGLESS_MTIME = 315532800
_RANGE = re.compile(rb"bytes=[ \t]*([0-9]*)-([0-9]*)[ \t]*", re.IGNORECASE)
_MAX_DIGITS = 18  # keeps int() far from its 4300-digit limit; bigger is "past the end"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to send: `status` and, for 206, the inclusive byte span."""

    status: int
    start: int = 0
    end: int = -1


FULL = Outcome(200)
NOT_MODIFIED = Outcome(304)
UNSATISFIABLE = Outcome(416)


def http_date(mtime: float) -> bytes | None:
    """The Last-Modified value for an mtime, or None when the mtime is meaningless."""
    if mtime <= MEANINGLESS_MTIME:
        return None
    return formatdate(int(mtime), usegmt=True).encode("ascii")


def parse_date(value: bytes) -> int | None:
    """Seconds since the epoch for an HTTP date (any of the three RFC forms), else None."""
    try:
        return int(parsedate_to_datetime(value.decode("latin-1")).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def etag_matches(header: bytes, etag: bytes) -> bool:
    """If-None-Match: weak comparison of `etag` against a list, or `*`."""
    if header == etag:
        return True
    bare = etag.removeprefix(b"W/")
    for item in header.split(b","):
        item = item.strip()
        if item == b"*" or item.removeprefix(b"W/") == bare:
            return True
    return False


def parse_range(header: bytes, size: int) -> Outcome | None:
    """A single `bytes=` range as 206 or 416; None when the header is to be ignored."""
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None  # malformed, other unit, or several ranges
    first, last = match.group(1), match.group(2)
    if not first:
        if not last:
            return None  # "bytes=-"
        suffix = _number(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return Outcome(206, max(size - suffix, 0), size - 1)
    start = _number(first)
    end = _number(last) if last else size - 1
    if last and end < start:
        return None  # inverted: invalid, so ignored
    if start >= size:
        return UNSATISFIABLE
    return Outcome(206, start, min(end, size - 1))


def _number(digits: bytes) -> int:
    return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS


def if_range_allows(header: bytes, etag: bytes, last_modified: bytes | None) -> bool:
    """If-Range: may the Range be honoured? Strong ETag or exact date only."""
    header = header.strip()
    if header.startswith((b'"', b"W/")):
        return header == etag and not etag.startswith(b"W/")
    if last_modified is None:
        return False
    when = parse_date(header)
    return when is not None and when == parse_date(last_modified)


def not_modified(if_none_match: bytes | None, if_modified_since: bytes | None, etag: bytes, mtime: int | None) -> bool:
    """304 for GET/HEAD? If-None-Match decides alone when present."""
    if if_none_match is not None:
        return etag_matches(if_none_match, etag)
    if if_modified_since is None or mtime is None:
        return False
    since = parse_date(if_modified_since)
    return since is not None and mtime <= since


def evaluate(
    *,
    head: bool,
    size: int,
    etag: bytes,
    last_modified: bytes | None,
    mtime: int | None,
    if_none_match: bytes | None = None,
    if_modified_since: bytes | None = None,
    range_: bytes | None = None,
    if_range: bytes | None = None,
) -> Outcome:
    """The response status for a file, given the request's validators (RFC 9110 §13.2.2)."""
    if not_modified(if_none_match, if_modified_since, etag, mtime):
        return NOT_MODIFIED
    if range_ is None or head:
        return FULL
    if if_range is not None and not if_range_allows(if_range, etag, last_modified):
        return FULL
    return parse_range(range_, size) or FULL
