"""Prefix routing for `serve --aio`, as pure functions.

Prefixes match on path-segment boundaries (`/user` never catches `/users`,
unlike Hypercorn's `startswith` dispatcher). The mounted app gets
`root_path + "/" + prefix` as its `root_path` and the full `path`, the ASGI
convention Starlette's `Mount` and uvicorn's `--root-path` follow, so FastAPI
builds its docs and redirect URLs with the prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from .types import Scope


class Prefixed(Protocol):
    @property
    def prefix(self) -> str: ...


M = TypeVar("M", bound=Prefixed)


def route_path(scope: Scope) -> str:
    """The part of `path` below `root_path` (Starlette's `get_route_path`)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path


def prefix_matches(prefix: str, path: str) -> bool:
    """Does `/prefix` own `path`? Only on a segment boundary."""
    head = "/" + prefix
    return path == head or path.startswith(head + "/")


def match_mount(mounts: Sequence[M], path: str) -> M | None:
    """The mount with the longest prefix that owns `path`, if any."""
    best: M | None = None
    for mount in mounts:
        if prefix_matches(mount.prefix, path) and (best is None or len(mount.prefix) > len(best.prefix)):
            best = mount
    return best


def mounted_scope(scope: Scope, prefix: str, state: dict[str, Any]) -> Scope:
    """A copy of `scope` for the app mounted at `prefix` (never mutates the original)."""
    return {**scope, "root_path": scope.get("root_path", "") + "/" + prefix, "state": dict(state)}


def index_body(mounts: Sequence[Any]) -> dict[str, Any]:
    return {"apps": [{"name": m.name, "prefix": "/" + m.prefix, "docs": f"/{m.prefix}/docs"} for m in mounts]}
