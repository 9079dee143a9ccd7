"""`serve --aio`: every app in one process under its prefix, with its own lifespan."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import Qkhyper, clean_env, free_port, get, run_cli, write_config

TWO_APPS = [
    {"name": "alpha", "app": "apps.probe:alpha"},
    {"name": "beta", "app": "apps.probe:beta", "prefix": "api/beta"},
]


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_aio_mounts_apps_with_their_lifespans(project: Path, run_qkhyper: type[Qkhyper], backend: str) -> None:
    config = write_config(project, TWO_APPS)
    port = free_port()
    log = project / "events.log"
    server = run_qkhyper(
        ["serve", "--aio", "--port", str(port), "--backend", backend, "--config", str(config)],
        project,
        clean_env(PROBE_LOG=str(log)),
    )
    server.wait_ready()
    base = f"http://127.0.0.1:{port}"
    alpha = get(f"{base}/alpha/scope").json()
    assert (alpha["root_path"], alpha["path"]) == ("/alpha", "/alpha/scope")
    assert alpha["resource"] == {"name": "alpha", "opened": True}
    beta = get(f"{base}/api/beta/scope").json()
    assert (beta["root_path"], beta["path"], beta["resource"]["name"]) == ("/api/beta", "/api/beta/scope", "beta")

    index = get(f"{base}/").json()
    assert [(a["name"], a["prefix"]) for a in index["apps"]] == [("alpha", "/alpha"), ("beta", "/api/beta")]
    missing = get(f"{base}/alphabet/scope")  # a prefix matches whole segments only
    assert missing.status_code == 404
    assert missing.json()["prefixes"] == ["/alpha", "/api/beta"]

    docs = get(f"{base}/alpha/docs", headers={"Accept": "text/html"})
    assert docs.status_code == 200 and "'/alpha/openapi.json'" in docs.text
    assert "/_qkhyper/docs/swagger-ui-bundle.js" in docs.text and "cdn.jsdelivr" not in docs.text
    assert get(f"{base}/_qkhyper/docs/swagger-ui-bundle.js").status_code == 200
    assert get(f"{base}/alpha/openapi.json").json()["paths"]["/scope"]
    redirect = get(f"{base}/alpha/items", follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"] == f"{base}/alpha/items/"

    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert log.read_text().splitlines() == ["startup alpha", "startup beta", "shutdown beta", "shutdown alpha"]


def test_aio_runs_apps_without_lifespan_support(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config = write_config(project, [TWO_APPS[0], {"name": "plain", "app": "apps.broken:no_lifespan"}])
    port = free_port()
    server = run_qkhyper(["runserver-aio", "--port", str(port), "--config", str(config)], project)
    server.wait_ready()
    assert get(f"http://127.0.0.1:{port}/plain/").text == "plain"
    assert get(f"http://127.0.0.1:{port}/alpha/scope").json()["resource"]["name"] == "alpha"


def test_aio_fails_whole_start_when_one_app_fails(project: Path) -> None:
    log = project / "events.log"
    config = write_config(project, [TWO_APPS[0], {"name": "db", "app": "apps.broken:startup_fails"}])
    result = run_cli(
        ["serve", "--aio", "--port", str(free_port()), "--config", str(config)], project, clean_env(PROBE_LOG=str(log))
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "qkhyper: error: app 'db': lifespan startup failed: RuntimeError: database unreachable"
    )
    assert log.read_text().splitlines() == ["startup alpha", "shutdown alpha"]  # the started one was shut down


def test_aio_selects_and_excludes(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config = write_config(project, [*TWO_APPS, {"name": "gamma", "app": "apps.probe:app"}])
    port = free_port()
    server = run_qkhyper(["serve", "--aio", "--exclude", "beta", "--port", str(port), "--config", str(config)], project)
    server.wait_ready()
    assert [a["name"] for a in get(f"http://127.0.0.1:{port}/").json()["apps"]] == ["alpha", "gamma"]
