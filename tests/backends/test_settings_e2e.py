"""Top-level settings, seen from outside a real `qkhyper serve` on each backend."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Qkhyper, clean_env, free_port, get, write_config

BACKENDS = ["hypercorn", "uvicorn"]
ACCESS_LINE = '"GET /scope'  # in Hypercorn's and uvicorn's access line formats alike


def _serve(project: Path, run_qkhyper: type[Qkhyper], backend: str, top: str) -> tuple[Qkhyper, int]:
    port = free_port()
    config = write_config(project, [{"name": "probe", "app": "apps.probe:app", "port": port}], top=top)
    server = run_qkhyper(["serve", "--backend", backend, "--config", str(config)], project, clean_env())
    server.wait_ready()
    return server, port


def _wait_for_text(path: Path, text: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.05)  # polling a file with a deadline, not a synchronisation sleep
    raise AssertionError(f"{text!r} never appeared in {path}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_accesslog_is_off(project: Path, run_qkhyper: type[Qkhyper], backend: str) -> None:
    server, port = _serve(project, run_qkhyper, backend, 'accesslog = ""')
    assert get(f"http://127.0.0.1:{port}/scope").status_code == 200
    server.signal(signal.SIGTERM)
    assert server.wait() == 0  # every line the worker wrote has been relayed by now
    assert ACCESS_LINE not in server.output


@pytest.mark.parametrize("backend", BACKENDS)
def test_dash_accesslog_goes_to_the_output(project: Path, run_qkhyper: type[Qkhyper], backend: str) -> None:
    server, port = _serve(project, run_qkhyper, backend, 'accesslog = "-"')
    assert get(f"http://127.0.0.1:{port}/scope").status_code == 200
    server.wait_for(rf"^probe +\| .*{ACCESS_LINE}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_accesslog_file_gets_the_lines(project: Path, run_qkhyper: type[Qkhyper], backend: str) -> None:
    log = project / "access.log"
    server, port = _serve(project, run_qkhyper, backend, f'accesslog = "{log}"')
    assert get(f"http://127.0.0.1:{port}/scope").status_code == 200
    _wait_for_text(log, ACCESS_LINE)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert ACCESS_LINE not in server.output


@pytest.mark.parametrize("backend", BACKENDS)
def test_root_path_means_the_same_on_both(project: Path, run_qkhyper: type[Qkhyper], backend: str) -> None:
    _server, port = _serve(project, run_qkhyper, backend, 'root_path = "/api"')
    seen = get(f"http://127.0.0.1:{port}/scope").json()
    assert (seen["root_path"], seen["path"]) == ("/api", "/api/scope")
    assert seen["url"] == f"http://127.0.0.1:{port}/api/scope"
    redirect = get(f"http://127.0.0.1:{port}/items", follow_redirects=False)
    assert redirect.headers["location"] == f"http://127.0.0.1:{port}/api/items/"
    behind = get(f"http://127.0.0.1:{port}/scope", headers={"X-Forwarded-Prefix": "/users"}).json()
    assert (behind["root_path"], behind["path"]) == ("/users/api", "/users/api/scope")
