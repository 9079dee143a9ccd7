"""Upstreams that stall, break the protocol, die mid-body, redirect, or ignore the prefix."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import Qkhyper, free_port, get
from tests.gateway.conftest import StackFactory


@contextmanager
def raw_upstream(reply: bytes | None) -> Iterator[int]:
    """A socket server that answers every request with `reply` (None: never answers)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            held.append(conn)
            conn.recv(65536)
            if reply is not None:
                conn.sendall(reply)
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def test_stalled_upstream_is_504(stack: StackFactory) -> None:
    with raw_upstream(None) as port:
        s = stack(("--upstream", f"stall:127.0.0.1:{port}", "--read-timeout", "1"))
        response = get(f"{s.url}/stall/x")
    assert response.status_code == 504
    assert response.json() == {
        "error": "gateway timeout",
        "route": "/stall",
        "reason": "upstream timed out",
        "request_id": response.headers["x-request-id"],
    }


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 abc\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"",
    ],
)
def test_malformed_upstream_is_502(stack: StackFactory, reply: bytes) -> None:
    with raw_upstream(reply) as port:
        s = stack(("--upstream", f"bad:127.0.0.1:{port}"))
        response = get(f"{s.url}/bad/x")
    assert response.status_code == 502
    assert response.json()["error"] == "bad gateway" and response.json()["route"] == "/bad"


def test_upstream_dying_mid_body_truncates_and_logs_once(stack: StackFactory) -> None:
    port = free_port()
    s = stack(apps=[{"name": "dies", "app": "apps.upstream:dies_mid_body", "port": port}])
    with pytest.raises(httpx.RemoteProtocolError):
        get(f"{s.url}/dies/x")
    s.gateway.wait_for("closed in the middle of the body")
    assert s.gateway.output.count("closed in the middle of the body") == 1
    assert "Traceback" not in s.gateway.output


def test_location_pointing_at_the_upstream_is_rewritten(stack: StackFactory) -> None:
    s = stack()
    response = get(f"{s.url}/up/absolute-redirect", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == f"http://127.0.0.1:{s.port}/up/echo?from=redirect"
    assert get(f"{s.url}/up/absolute-redirect", follow_redirects=True).json()["route"] == "/echo"


def test_add_slashes(stack: StackFactory, project: Path, run_qkhyper: type[Qkhyper]) -> None:
    s = stack(("--add-slashes",))
    response = get(f"{s.url}/up?x=1", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (307, "/up/?x=1")
    foreign = free_port()
    upstream = run_qkhyper_plain_uvicorn(project, run_qkhyper, "apps.probe:app", foreign)
    plain = stack(("--add-slashes", "--upstream", f"plain:127.0.0.1:{foreign}"))
    # /items/ is declared with its slash: asked for /items/ at once, no redirect at all.
    direct = get(f"{plain.url}/plain/items?x=1", follow_redirects=False)
    assert (direct.status_code, direct.json()) == (200, [1, 2])
    # /scope has none: the app's redirect back to /scope is followed inside the gateway, not looped.
    scope = get(f"{plain.url}/plain/scope?x=1", follow_redirects=False)
    assert scope.status_code == 200 and scope.json()["path"] == "/scope"
    assert get(f"{plain.url}/plain/openapi.json", follow_redirects=False).status_code == 200  # a dot: no slash
    del upstream


def test_fastapi_redirect_is_followed_internally(
    stack: StackFactory, project: Path, run_qkhyper: type[Qkhyper]
) -> None:
    foreign = free_port()
    upstream = run_qkhyper_plain_uvicorn(project, run_qkhyper, "apps.probe:app", foreign)
    s = stack(("--redirect", "--upstream", f"plain:127.0.0.1:{foreign}"))  # the older spelling
    # First a POST: the 307 is followed with the same method and body (nothing remembered yet).
    posted = httpx.post(f"{s.url}/plain/items", content=b"new item", follow_redirects=False, timeout=30)
    assert (posted.status_code, posted.json()) == (200, {"method": "POST", "body": "new item"})
    direct = get(f"{s.url}/plain/items", follow_redirects=False)
    assert (direct.status_code, direct.json()) == (200, [1, 2])
    assert get(f"{s.url}/plain/items", follow_redirects=False).status_code == 200  # remembered
    plain = stack(("--upstream", f"plain:127.0.0.1:{foreign}"))
    redirect = get(f"{plain.url}/plain/items", follow_redirects=False)
    # Plain uvicorn ignores X-Forwarded-Prefix and names the client's host: the prefix is put back.
    assert (redirect.status_code, redirect.headers["location"]) == (307, f"{plain.url}/plain/items/")
    followed = get(f"{plain.url}/plain/items", follow_redirects=True)
    assert (followed.status_code, followed.json()) == (200, [1, 2])
    del upstream


def run_qkhyper_plain_uvicorn(project: Path, run_qkhyper: type[Qkhyper], target: str, port: int) -> object:
    """A 'foreign' upstream: plain uvicorn, which ignores X-Forwarded-Prefix."""
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", target, "--port", str(port), "--log-level", "warning"],
        cwd=project,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/openapi.json")
            break
        except httpx.ConnectError:
            time.sleep(0.1)

    class Stopper:
        def __del__(self) -> None:
            process.terminate()
            process.wait(10)

    stopper = Stopper()
    _KEEP.append((process, stopper))
    return stopper


_KEEP: list[object] = []


@pytest.fixture(autouse=True)
def _stop_foreign_upstreams() -> Iterator[None]:
    yield
    while _KEEP:
        process, _ = _KEEP.pop()  # type: ignore[misc]
        process.terminate()
        process.wait(10)


def test_docs_of_a_qkhyper_upstream(stack: StackFactory) -> None:
    s = stack(apps=[{"name": "users", "app": "apps.probe:app"}])
    page = get(f"{s.url}/users/docs", headers={"Accept": "text/html"}).text
    assert "'/users/openapi.json'" in page and "/users/_qkhyper/docs/swagger-ui-bundle.js" in page
    assert get(f"{s.url}/users/_qkhyper/docs/swagger-ui-bundle.js").status_code == 200
    assert get(f"{s.url}/users/openapi.json").json()["servers"] == [{"url": "/users"}]


def test_docs_of_a_foreign_upstream(stack: StackFactory, project: Path, run_qkhyper: type[Qkhyper]) -> None:
    foreign = free_port()
    run_qkhyper_plain_uvicorn(project, run_qkhyper, "apps.probe:app", foreign)
    s = stack(("--upstream", f"foreign:127.0.0.1:{foreign}"))
    page = get(f"{s.url}/foreign/docs", headers={"Accept": "text/html"}).text
    assert "'/foreign/openapi.json'" in page
    assert "/_qkhyper/docs/swagger-ui-bundle.js" in page and "cdn.jsdelivr" not in page
    assert get(f"{s.url}/_qkhyper/docs/swagger-ui-bundle.js").status_code == 200
    spec = get(f"{s.url}/foreign/openapi.json").json()
    assert spec["servers"] == [{"url": "/foreign"}]
    assert set(spec["paths"]) >= {"/scope", "/slow", "/items/"}  # nothing else was touched


def test_round_robin_with_passive_health(stack: StackFactory, project: Path) -> None:
    ports = [free_port(), free_port()]
    apps = [{"name": f"r{i}", "app": "apps.upstream:app", "port": p} for i, p in enumerate(ports)]
    table = f'upstreams = {{ "/pool" = ["127.0.0.1:{ports[0]}", "127.0.0.1:{ports[1]}"] }}'
    s = stack(apps=apps, gateway_table=table)
    pids = {get(f"{s.url}/pool/echo").json()["pid"] for _ in range(6)}
    assert len(pids) == 2
    assert s.serve is not None
    os.kill(s.serve.pids("r1")[0], signal.SIGSTOP)  # a stuck target would time out; a dead one refuses
    s.serve.signal(signal.SIGTERM)
    s.serve.wait()
    # Both targets are gone now: every request is a clean 502, never a hang or a traceback.
    assert get(f"{s.url}/pool/echo").status_code == 502


def test_round_robin_skips_a_refusing_target(stack: StackFactory) -> None:
    live = free_port()
    dead = free_port()
    apps = [{"name": "live", "app": "apps.upstream:app", "port": live}]
    table = f'upstreams = {{ "/pool" = ["127.0.0.1:{dead}", "127.0.0.1:{live}"] }}'
    s = stack(apps=apps, gateway_table=table)
    assert all(get(f"{s.url}/pool/echo").status_code == 200 for _ in range(6))
    s.gateway.wait_for(rf"/pool: connect to 127.0.0.1:{dead} failed.*skipping it")
    assert s.gateway.output.count("skipping it") == 1  # skipped for 10 s, not retried per request
