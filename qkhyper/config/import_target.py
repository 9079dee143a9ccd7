"""`qkhyper serve module:app`: one app named on the command line, as `uvicorn module:app` serves it.

An APP argument with a `:` is an import target, never a config app (app names
may not hold a `:`). The app replaces the config's apps for this run; the
config, if one is found, still gives host, backend and the Hypercorn keys. Its
module resolves from the current folder, like every path on the command line,
and it listens on `--port`, else 8000 (uvicorn's default), at the root.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError
from .model import AppSpec, Settings

DEFAULT_PORT = 8000
_TARGET_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(\(\))?$")


def import_target(names: Sequence[str]) -> str | None:
    """The one import target among `serve`'s APP arguments, None when there is none.

    Raises:
        UsageError: a malformed target, or a target beside other APP arguments.
    """
    targets = [name for name in names if ":" in name]
    if not targets:
        return None
    if len(names) > 1:
        raise UsageError(f"serve {targets[0]} serves that one app: leave out the other APP arguments")
    if not _TARGET_RE.match(targets[0]):
        raise UsageError(f"{targets[0]!r} must look like 'module:attribute' or 'module:factory()'")
    return targets[0]


def app_name(target: str) -> str:
    """The label in logs and the ready table: the module's last part (`proj.main:app` -> `main`)."""
    return target.partition(":")[0].rpartition(".")[2]


def target_settings(settings: Settings, target: str, workers: int | None, cwd: Path) -> Settings:
    """`settings` serving only `target`, resolved from `cwd` (`workers`: $WEB_CONCURRENCY, else 1)."""
    name = app_name(target)
    spec = AppSpec(name=name, app=target, prefix=name, port=DEFAULT_PORT, workers=workers or 1)
    qk = dataclasses.replace(settings.qkhyper, apps=[spec])
    return dataclasses.replace(settings, qkhyper=qk, base_dir=cwd)
