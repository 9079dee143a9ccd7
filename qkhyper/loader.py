"""Importing apps from `module:attribute` strings.

`module:func()` calls a factory. The attribute path is walked with `getattr`,
never `eval` (Hypercorn's loader evaluates the string in the module's scope).
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path
from typing import Any

from .errors import AppLoadError


def load_app(name: str, target: str, base_dir: Path) -> Any:
    """Import `target` for the app called `name`, resolving modules from `base_dir` first.

    Raises:
        AppLoadError: naming the app, with a one-line reason.
    """
    module_name, _, attr_path = target.partition(":")
    factory = attr_path.endswith("()")
    attr_path = attr_path.removesuffix("()")
    if not module_name or not attr_path:
        raise AppLoadError(name, f"{target!r} must look like 'module:attribute'")
    base = str(base_dir)
    if base not in sys.path:
        sys.path.insert(0, base)
    module = _import(name, module_name)
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(name, f"module {module_name!r} has no attribute {attr_path!r}") from None
    if factory:
        obj = _call_factory(name, target, obj)
    if not callable(obj):
        raise AppLoadError(name, f"{target!r} is a {type(obj).__name__}, not an ASGI app")
    return obj


def _import(name: str, module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppLoadError(name, f"cannot import {module_name!r}: no module named {exc.name!r}") from exc
        raise AppLoadError(name, f"importing {module_name!r} failed: {_describe(exc)}") from exc
    except Exception as exc:  # anything the app's module raises at import time
        raise AppLoadError(name, f"importing {module_name!r} failed: {_describe(exc)}") from exc


def _call_factory(name: str, target: str, factory: Any) -> Any:
    if not callable(factory):
        raise AppLoadError(name, f"{target!r}: {type(factory).__name__} is not callable")
    try:
        return factory()
    except Exception as exc:
        raise AppLoadError(name, f"factory {target!r} failed: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    """One line: exception type, message and where in the user's code it happened."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename and f.filename != __file__]
    where = f" ({user[-1].filename}, line {user[-1].lineno})" if user else ""
    return f"{type(exc).__name__}: {exc}{where}"
