"""The demo end to end in headless Chromium: `serve`, `gateway` and `static`, page at the static port."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Qkhyper, free_port, write_config
from tests.e2e.cdp import Browser

REPO = Path(__file__).resolve().parents[2]
FRONTEND = REPO / "qkhyper" / "demo" / "static"


# The page's #status reads "loading…" until both API calls came back: then "ok" or "error: ...".
SETTLED = "(t => (t === 'ok' || t.startsWith('error')) && t)(document.getElementById('status').textContent)"


def start_static(run_qkhyper: type[Qkhyper], project: Path, api_target: str, backend: str) -> str:
    port = free_port()
    args = ["static", "--root", str(FRONTEND), "--port", str(port), "--api-target", api_target]
    run_qkhyper([*args, "--backend", backend], project).wait_ready()
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_demo_page_shows_both_apps_through_gateway(
    project: Path, run_qkhyper: type[Qkhyper], browser: Browser, backend: str
) -> None:
    apps = [
        {"name": "users", "app": "qkhyper.demo.users:app"},
        {"name": "orders", "app": "qkhyper.demo.orders:app"},
    ]
    config = write_config(project, apps)
    run_qkhyper(["serve", "--config", str(config), "--backend", backend], project).wait_ready()
    gateway = free_port()
    run_qkhyper(["gateway", "--config", str(config), "--port", str(gateway), "--add-slashes"], project).wait_ready()
    site = start_static(run_qkhyper, project, f"http://127.0.0.1:{gateway}", backend)

    page = browser.open(site + "/orders/2")  # a client-side route: the SPA fallback serves the page
    assert browser.wait_for(page, SETTLED) == "ok"
    users = browser.evaluate(page, "[...document.querySelectorAll('#users li')].map(li => li.textContent)")
    orders = browser.evaluate(page, "[...document.querySelectorAll('#orders li')].map(li => li.textContent)")
    assert any("Ada" in text for text in users) and any("Grace" in text for text in users)
    assert any("keyboard" in text for text in orders) and any("compiler" in text for text in orders)
    events = browser.wait_for(
        page, "document.querySelectorAll('#events li').length >= 2 && document.getElementById('events').textContent"
    )
    assert "users event" in events


def test_demo_page_reports_a_dead_api(project: Path, run_qkhyper: type[Qkhyper], browser: Browser) -> None:
    site = start_static(run_qkhyper, project, f"http://127.0.0.1:{free_port()}", "hypercorn")
    page = browser.open(site + "/")
    status = browser.wait_for(page, SETTLED)
    assert status == "error: /api/users/ answered HTTP 502"
