"""The proxy's in-process tests run on trio with a MockClock that jumps ahead whenever every task waits.

So a 60 s read timeout takes no real time, and a test that would hang
instead reaches the next deadline at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from trio.testing import MockClock

from tests.proxy.harness import PARSER


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


@pytest.fixture(autouse=True, params=["h11", "httptools"])
def upstream_parser(request: pytest.FixtureRequest) -> Iterator[str]:
    token = PARSER.set(request.param)
    yield request.param
    PARSER.reset(token)
