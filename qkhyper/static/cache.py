"""The two in-memory caches of a static worker; both live on the event loop thread.

- `FileCache` owns the bodies of small files, keyed by real path and valid
  for one stat key. It is bounded by total bytes and evicts least recently
  used first, so memory stays bounded however many URLs point at files.
- `ResourceCache` maps a raw request path to its `Resource` (see `resources.py`): the
  result of parsing, containment, sibling lookup and header building. A hit
  skips all of that; the app still stats the chosen file on every request,
  and re-resolves a path after `recheck` seconds, which is how a new
  `.br` sibling or a retargeted symlink is noticed. Routes hold no bodies,
  so this cache is bounded by entry count alone (oldest inserted goes first).

Neither cache is shared between workers or locked: only the event loop
thread touches them, and worker threads hand their results back to it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from .files import StatKey

SMALL_FILE = 256 * 1024  # bytes: at most this big, a file is held in memory
CACHE_BYTES = 64 * 1024 * 1024  # total bytes of small files per worker
MAX_ROUTES = 4096

V = TypeVar("V")


class FileCache:
    """Bodies of small files, LRU, bounded by their total size."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._entries: OrderedDict[str, tuple[StatKey, bytes]] = OrderedDict()

    def get(self, path: str, key: StatKey) -> bytes | None:
        """The body of `path` if cached for exactly this stat key."""
        entry = self._entries.get(path)
        if entry is None or entry[0] != key:
            return None
        self._entries.move_to_end(path)
        return entry[1]

    def put(self, path: str, key: StatKey, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        self.discard(path)
        self._entries[path] = (key, body)
        self.used += len(body)
        while self.used > self.max_bytes:
            _, (_, old) = self._entries.popitem(last=False)
            self.used -= len(old)

    def discard(self, path: str) -> None:
        entry = self._entries.pop(path, None)
        if entry is not None:
            self.used -= len(entry[1])

    def __len__(self) -> int:
        return len(self._entries)


class ResourceCache(Generic[V]):
    """Raw path → value, bounded by count; insertion order decides eviction."""

    def __init__(self, max_entries: int = MAX_ROUTES) -> None:
        self.max_entries = max_entries
        self._entries: dict[bytes, V] = {}

    def get(self, raw_path: bytes) -> V | None:
        return self._entries.get(raw_path)

    def put(self, raw_path: bytes, value: V) -> None:
        self._entries.pop(raw_path, None)
        if len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[raw_path] = value

    def discard(self, raw_path: bytes) -> None:
        self._entries.pop(raw_path, None)

    def __len__(self) -> int:
        return len(self._entries)
