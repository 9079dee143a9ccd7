"""The proxy's in-process tests run on trio with a MockClock that jumps ahead whenever every task waits.

So a 60 s read timeout takes no real time, and a test that would hang
instead reaches the next deadline at once.
"""

from __future__ import annotations

from typing import Any

import pytest
from trio.testing import MockClock


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}
