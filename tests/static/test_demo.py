"""The demo frontend in `qkhyper/demo/static/`, served as the repo-root `hypercorn.toml` describes it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import Qkhyper, free_port, get

REPO = Path(__file__).resolve().parents[2]
ASSET = re.compile(r'(?:src|href)="(/assets/[^"]+)"')


@pytest.fixture
def demo(run_qkhyper: type[Qkhyper]) -> str:
    """`qkhyper static` from the repo root: root qkhyper/demo/static from its hypercorn.toml, a free port."""
    port = free_port()
    server = run_qkhyper(["static", "--port", str(port)], cwd=REPO)
    server.wait_ready()
    return f"http://127.0.0.1:{port}"


def test_page_and_fingerprinted_assets(demo: str) -> None:
    page = get(demo + "/")
    assert page.headers["cache-control"] == "no-cache"
    for element in ('id="users"', 'id="orders"', 'id="status"', 'id="events"'):
        assert element in page.text
    assets = ASSET.findall(page.text)
    assert {Path(a).suffix for a in assets} == {".js", ".css"}
    for asset in assets:
        response = get(demo + asset)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["content-type"].startswith(("text/javascript", "text/css"))
    script = get(demo + next(a for a in assets if a.endswith(".js"))).text
    for url in ("/api/users/", "/api/orders/", "/api/users/live/events"):
        assert f'"{url}"' in script
    assert "EventSource" in script


def test_no_external_urls() -> None:
    """The demo must work offline: nothing fetched from a CDN or any other host."""
    for path in (REPO / "qkhyper" / "demo" / "static").rglob("*"):
        if path.suffix in {".html", ".js", ".css"}:
            assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", path.read_text()), path


def test_spa_route_serves_the_page(demo: str) -> None:
    response = get(demo + "/orders/2", headers={"Accept": "text/html"})
    assert response.status_code == 200 and 'id="orders"' in response.text


def test_bundled_demo_from_an_empty_folder(run_qkhyper: type[Qkhyper], tmp_path: Path) -> None:
    """No hypercorn.toml here: the bundled demo's frontend comes from the package, what qkhyper writes stays here."""
    port = free_port()
    server = run_qkhyper(["static", "--port", str(port)], cwd=tmp_path)
    server.wait_ready()
    page = get(f"http://127.0.0.1:{port}/")
    assert page.status_code == 200 and 'id="users"' in page.text
    assert (tmp_path / ".qkhyper").is_dir()  # the control socket's folder: the cwd, not the package
    assert not (REPO / "qkhyper" / "demo" / ".qkhyper").exists()
