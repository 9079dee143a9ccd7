"""Headless Chromium for the browser tests; they skip, saying why, where it is missing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cdp import Browser, find_chromium

CHROMIUM = find_chromium()


@pytest.fixture
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    instance = Browser(CHROMIUM)
    try:
        yield instance
    finally:
        instance.close()
