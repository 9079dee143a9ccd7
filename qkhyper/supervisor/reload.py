"""`serve --reload`: watch sources with watchfiles and roll the workers they belong to.

Rolling (not restarting) is what makes a broken edit harmless: the new worker
must import and finish startup before the old one is drained, so a syntax
error leaves the old workers serving and the error in the log.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import watchfiles

from .plan import ServePlan

log = logging.getLogger("qkhyper.reload")

# Milliseconds of quiet before a batch of changes is acted on (editors write in bursts).
DEBOUNCE_MS = 400


@dataclass(frozen=True)
class WatchPlan:
    """What to watch, and which unit each folder belongs to."""

    folders: dict[str, list[Path]]  # unit label -> source folders of its apps
    config: Path | None  # a change here rolls everything, with the config re-read
    extra: list[Path]  # --reload-dir: a change here rolls everything

    def paths(self) -> list[Path]:
        found = {p for group in self.folders.values() for p in group} | set(self.extra)
        if self.config is not None:
            found.add(self.config.parent)
        return sorted(found)


def source_folder(target: str, base_dir: Path) -> Path | None:
    """The folder holding the module of `module:attr`, found without importing it."""
    module = target.partition(":")[0]
    local = base_dir.joinpath(*module.split("."))
    if local.is_dir():
        return local
    if local.with_suffix(".py").is_file():
        return local.parent
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.has_location:
        return None
    return Path(spec.origin).parent


def make_watch_plan(plan: ServePlan, base_dir: Path, config: Path | None, extra: Iterable[str]) -> WatchPlan:
    folders: dict[str, list[Path]] = {}
    for unit in plan.units:
        found = [source_folder(ref.target, base_dir) for ref in unit.child.apps]
        folders[unit.label] = [f.resolve() for f in found if f is not None]
    return WatchPlan(folders, config.resolve() if config else None, [Path(d).resolve() for d in extra])


def affected(changed: Iterable[Path], watch: WatchPlan) -> tuple[set[str], bool]:
    """The units to roll for these changed files, and whether the config changed."""
    labels: set[str] = set()
    config_changed = False
    for path in changed:
        if watch.config is not None and path == watch.config:
            config_changed = True
        elif any(path.is_relative_to(d) for d in watch.extra):
            labels.update(watch.folders)
        elif path.suffix == ".py":
            labels.update(label for label, dirs in watch.folders.items() if any(path.is_relative_to(d) for d in dirs))
    if config_changed:
        labels.update(watch.folders)
    return labels, config_changed


async def watch(watch_plan: WatchPlan, on_change: Callable[[set[str], bool], Awaitable[None]]) -> None:
    """Call `on_change(labels, config_changed)` for every batch of relevant edits."""
    paths = watch_plan.paths()
    announced = False
    # yield_on_timeout: the first (empty) batch proves the watcher is running, so
    # the log line below is a promise that an edit from now on will be seen.
    async for changes in watchfiles.awatch(*paths, debounce=DEBOUNCE_MS, rust_timeout=500, yield_on_timeout=True):
        if not announced:
            log.info("watching for changes: %s", ", ".join(str(p) for p in paths))
            announced = True
        labels, config_changed = affected((Path(p).resolve() for _, p in changes), watch_plan)
        if labels:
            await on_change(labels, config_changed)
