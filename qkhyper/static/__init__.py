"""qkhyper's static frontend server (`qkhyper static`, SPEC §5).

Pure decisions live in `resolve` (which file a URL may name), `conditional`
(304/206/416), `mime` (Content-Type, Cache-Control) and `negotiate`
(`.br`/`.gz`); `files` touches the disk, `cache` and `resources` keep the
per-request path cheap, `respond` sends bodies and `app` ties them together.
"""

from __future__ import annotations

from .app import StaticApp, create

__all__ = ["StaticApp", "create"]
