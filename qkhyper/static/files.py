"""Filesystem side of the static server: containment, siblings, reading.

Every function here blocks and runs in a worker thread
(`anyio.to_thread.run_sync`), except that the app stats a cached file on the
event loop to validate its cache entry.

Containment follows Starlette's `lookup_path` (realpath, then require the
root's realpath as prefix) with the fixes its history asks for: the prefix
ends with a separator, so a sibling folder `dist-secret` of root `dist` is
outside (CVE-2023-29159), and a `.br`/`.gz` sibling passes the same check
as the file it stands for (CVE-2024-42367). The resolved path is what gets
opened, with `O_NOFOLLOW` (a symlink swapped in afterwards fails) and
`O_NONBLOCK` (a FIFO cannot hang the open); only regular files are served.
Any `OSError` (ELOOP, ENAMETOOLONG, ENOTDIR, EACCES…) means "not found".
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass

from .negotiate import IDENTITY, SIBLINGS
from .resolve import INDEX, RequestPath

# (st_mtime_ns, st_ctime_ns, st_size, st_ino): ctime too, because builds reset
# mtime and an in-place rewrite keeps the inode, but nothing can set ctime.
StatKey = tuple[int, int, int, int]
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


@dataclass(frozen=True, slots=True)
class Loaded:
    """One file on disk as served: its content when small, else None (streamed)."""

    encoding: str
    path: str
    key: StatKey
    size: int
    mtime: float
    body: bytes | None
    digest: str  # content hash when small, else derived from the stat key


@dataclass(frozen=True, slots=True)
class Found:
    """A file the target names, with its precompressed siblings (identity first)."""

    name: str
    files: tuple[Loaded, ...]


@dataclass(frozen=True, slots=True)
class Redirect:
    """A directory with an index, asked for without its trailing slash."""


class Root:
    """The static root, resolved once; `find` maps targets to files under it."""

    def __init__(self, root: str, small_limit: int) -> None:
        self.path = os.path.realpath(root)
        self._prefix = self.path if self.path.endswith(os.sep) else self.path + os.sep
        self.small_limit = small_limit

    def contained(self, path: str) -> str | None:
        """The real path of `path` if it lies inside the root, else None."""
        real = os.path.realpath(path)
        return real if real.startswith(self._prefix) else None

    def find(self, target: RequestPath) -> Found | Redirect | None:
        """Look a target up; None for anything that is not a servable file.

        A directory named without its trailing slash is a `Redirect` only
        when it has an `index.html` (nginx redirects every directory; here a
        folder without an index is simply not a page, so an SPA route that
        happens to share a folder's name still gets the fallback).
        """
        full = os.path.join(self.path, *target.parts)
        if target.directory:
            return self._found(os.path.join(full, INDEX), target.name)
        real = self.contained(full)
        if real is None:
            return None
        try:
            mode = os.stat(real).st_mode
        except (OSError, ValueError):
            return None
        if stat.S_ISDIR(mode):
            index = self.contained(os.path.join(full, INDEX))
            return Redirect() if index is not None and _is_file(index) else None
        return self._found(full, target.name)

    def _found(self, full: str, name: str) -> Found | None:
        main = self._load(IDENTITY, full)
        if main is None:
            return None
        files = [main]
        for encoding, suffix in SIBLINGS:
            sibling = self._load(encoding, full + suffix)
            if sibling is not None:
                files.append(sibling)
        return Found(name, tuple(files))

    def _load(self, encoding: str, path: str) -> Loaded | None:
        real = self.contained(path)
        if real is None:
            return None
        try:
            return read_file(encoding, real, self.small_limit)
        except (OSError, ValueError):
            return None


def _is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """Open a resolved path; raise `FileNotFoundError` unless it is a regular file.

    The caller owns (and closes) the descriptor.
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileNotFoundError(path)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_file(encoding: str, path: str, small_limit: int) -> Loaded:
    """Stat (and, when small, read and hash) one file from an open descriptor."""
    fd, st = open_regular(path)
    try:
        key = stat_key(st)
        if st.st_size > small_limit:
            digest = f"{st.st_mtime_ns:x}-{st.st_size:x}-{st.st_ino:x}"
            return Loaded(encoding, path, key, st.st_size, st.st_mtime, None, digest)
        body = _read_all(fd, st.st_size)
    finally:
        os.close(fd)
    # A file rewritten while we read it: the key then describes what we hold,
    # and the next request's stat sees a different key and reloads.
    key = key if len(body) == st.st_size else (st.st_mtime_ns, st.st_ctime_ns, -1, st.st_ino)
    digest = hashlib.blake2b(body, digest_size=12).hexdigest()
    return Loaded(encoding, path, key, len(body), st.st_mtime, body, digest)


def _read_all(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = os.read(fd, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
