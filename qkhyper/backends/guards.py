"""Checks a patch makes before it applies: do the methods it overrides still look as they did?

A patch of a server's internals states what it overrides (method name ->
parameter names). At run time a mismatch makes the patch step aside with a
warning (the server still serves, without it); tests/backends/test_internals.py
checks the same tables against the installed versions, so an upgrade that
moved something fails there first.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

Overrides = Mapping[str, list[str]]


def mismatches(owner: type, expected: Overrides) -> list[str]:
    """What of `expected` `owner` no longer has, one line each (empty when all is as expected)."""
    found = []
    for name, params in expected.items():
        func = getattr(owner, name, None)
        if func is None:
            found.append(f"{owner.__qualname__}.{name} is gone")
            continue
        actual = list(inspect.signature(func).parameters)
        if actual != params:
            found.append(f"{owner.__qualname__}.{name}({', '.join(actual)}), expected ({', '.join(params)})")
    return found


def require(owner: type, expected: Overrides) -> None:
    """Raise TypeError naming every mismatch, so `_patch_safely`-style callers fall back."""
    problems = mismatches(owner, expected)
    if problems:
        raise TypeError("; ".join(problems))
