"""The Swagger UI of a demo app, opened through the gateway in headless Chromium, without internet."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Qkhyper, free_port, write_config
from tests.e2e.cdp import Browser


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_swagger_ui_through_the_gateway_runs_a_request(
    project: Path, run_qkhyper: type[Qkhyper], browser: Browser, backend: str
) -> None:
    config = write_config(project, [{"name": "users", "app": "qkhyper.demo.users:app"}])
    run_qkhyper(["serve", "--config", str(config), "--backend", backend], project).wait_ready()
    port = free_port()
    run_qkhyper(["gateway", "--config", str(config), "--port", str(port)], project).wait_ready()

    page = browser.open(f"http://127.0.0.1:{port}/users/docs")
    # The operations render only if Swagger UI loaded from /users/_qkhyper/docs/ (no CDN here).
    operations = browser.wait_for(page, "document.querySelectorAll('.opblock').length")
    assert operations >= 4
    status = browser.wait_for(page, TRY_IT_OUT, timeout=30)
    assert status == "200"


# Open GET /health, press "Try it out" and "Execute", then read the live response's status.
# Swagger UI re-renders after each click, so every call looks the elements up afresh and
# does the next step; the test calls it until it returns the status.
TRY_IT_OUT = """
(() => {
  const block = [...document.querySelectorAll('.opblock-get')]
    .find(b => b.querySelector('.opblock-summary-path')?.getAttribute('data-path') === '/health');
  if (!block) return null;
  const status = block.querySelector('.live-responses-table tbody .response-col_status');
  if (status) return status.textContent.trim();
  const execute = block.querySelector('.execute');
  if (execute) { execute.click(); return null; }
  const tryOut = block.querySelector('.try-out__btn');
  if (tryOut) { tryOut.click(); return null; }
  block.querySelector('.opblock-summary-control').click();
  return null;
})()
"""
