"""The metrics endpoint of real supervisors on 127.0.0.1: `gateway` (both backends), `serve`, `static`.

Every wait polls the endpoint until the counts match, with a deadline: the
workers' counts arrive with their heartbeats, at least once a second.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx
import pytest

from tests.conftest import Qkhyper, clean_env, free_port, run_cli, write_config
from tests.gateway.conftest import StackFactory
from tests.metrics.scrape import get_json, scrape, value, wait_for

REQUESTS = "qkhyper_gateway_requests_total"


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_gateway_counts_requests_by_route_and_class(stack: StackFactory, backend: str) -> None:
    metrics = free_port()
    s = stack(("--backend", backend), gateway_table=f"metrics_port = {metrics}")
    with httpx.Client(base_url=s.url, timeout=10) as client:
        for i in range(7):
            assert client.get(f"/up/raw/{i}").status_code == 200
        for _ in range(3):
            assert client.get("/missing/route").status_code == 404
        assert client.post("/up/echo", content=b"x").status_code == 200

    def counted(samples: dict[str, dict[frozenset[tuple[str, str]], float]]) -> bool:
        return value(samples, REQUESTS, route="/up", method="GET", code="2xx") == 7 and (
            value(samples, REQUESTS, route="unmatched", method="GET", code="4xx") == 3
        )

    samples = wait_for(metrics, counted)
    assert value(samples, REQUESTS, route="/up", method="POST", code="2xx") == 1
    assert value(samples, "qkhyper_gateway_request_duration_seconds_count", route="/up") == 8
    assert value(samples, "qkhyper_gateway_request_duration_seconds_bucket", route="/up", le="+Inf") == 8
    assert value(samples, "qkhyper_requests_total", app="gateway") == 11
    assert value(samples, "qkhyper_gateway_pool_connections_opened_total") >= 1
    assert value(samples, "qkhyper_gateway_pool_connections_reused_total") >= 6  # one client, kept alive
    assert value(samples, "qkhyper_workers", app="gateway", state="ready") == 1
    assert value(samples, "qkhyper_worker_resident_memory_bytes", app="gateway", worker="1") > 1e6
    assert value(samples, "qkhyper_ready") == 1
    assert get_json(metrics, "/healthz") == (200, {"status": "ok", "apps": {"gateway": {"ready": 1, "workers": 1}}})
    assert get_json(metrics, "/readyz") == (200, {"status": "ready"})


def test_gateway_counts_upstream_failures_by_reason(stack: StackFactory) -> None:
    metrics = free_port()
    s = stack(serve=False, gateway_table=f"metrics_port = {metrics}")  # nobody listens on the upstream's port
    for _ in range(2):
        assert httpx.get(f"{s.url}/up/echo", timeout=10).status_code == 502

    samples = wait_for(
        metrics,
        lambda m: value(m, "qkhyper_gateway_upstream_failures_total", route="/up", reason="connect_failed") == 2,
    )
    assert value(samples, REQUESTS, route="/up", method="GET", code="5xx") == 2


def test_serve_counts_a_crash_and_keeps_counting_requests(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    metrics = free_port()
    users, orders = free_port(), free_port()
    apps: list[dict[str, object]] = [
        {"name": "users", "app": "apps.upstream:app", "port": users},
        {"name": "orders", "app": "apps.upstream:app", "port": orders},
    ]
    config = write_config(project, apps, qkhyper=f"metrics_port = {metrics}")
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    assert get_json(metrics, "/readyz") == (200, {"status": "ready"})
    for _ in range(4):
        assert httpx.get(f"http://127.0.0.1:{users}/echo", timeout=10).status_code == 200
    wait_for(metrics, lambda m: value(m, "qkhyper_requests_total", app="users") == 4)

    [pid] = server.pids("users")
    os.kill(pid, signal.SIGKILL)
    after = wait_for(
        metrics,
        lambda m: (
            value(m, "qkhyper_worker_restarts_total", app="users", reason="crash") == 1
            and value(m, "qkhyper_workers", app="users", state="ready") == 1
        ),
    )
    assert value(after, "qkhyper_worker_restarts_total", app="orders", reason="crash") == 0
    assert value(after, "qkhyper_requests_total", app="users") == 4  # the killed worker's count is kept
    httpx.get(f"http://127.0.0.1:{users}/echo", timeout=10)
    wait_for(metrics, lambda m: value(m, "qkhyper_requests_total", app="users") == 5)  # and the new one adds to it
    code, body = get_json(metrics, "/healthz")
    assert code == 200 and body == {
        "status": "ok",
        "apps": {"users": {"ready": 1, "workers": 1}, "orders": {"ready": 1, "workers": 1}},
    }
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_a_taken_metrics_port_stops_serve_before_any_worker(project: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = write_config(
            project, [{"name": "users", "app": "apps.upstream:app"}], qkhyper=f"metrics_port = {port}"
        )
        result = run_cli(["serve", "--config", str(config)], project)
    assert result.returncode == 2
    assert f"metrics: port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "worker" not in result.stderr.lower()


def test_a_bad_metrics_port_is_one_config_line(project: Path) -> None:
    config = write_config(project, [{"name": "users", "app": "apps.upstream:app"}], qkhyper="metrics_port = 70000")
    result = run_cli(["check", "--config", str(config)], project)
    assert result.returncode == 2
    assert "qkhyper.metrics_port must be a port number 1-65535 (0 or absent: metrics off), got 70000" in result.stderr


def test_static_counts_by_status_with_304s_and_bytes(tmp_path: Path, run_qkhyper: type[Qkhyper]) -> None:
    root = tmp_path / "dist"
    root.mkdir()
    (root / "index.html").write_bytes(b"<p>hi</p>\n")
    (root / "app.js").write_bytes(b"x" * 1000)
    port, metrics = free_port(), free_port()
    env = clean_env(QKHYPER_STATIC_METRICS_PORT=str(metrics))
    args = ["static", "--root", str(root), "--port", str(port), "--api-target", f"http://127.0.0.1:{free_port()}"]
    server = run_qkhyper(args, tmp_path, env)
    server.wait_ready()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        first = client.get("/app.js")
        assert first.status_code == 200
        for _ in range(2):
            again = client.get("/app.js", headers={"if-none-match": first.headers["etag"]})
            assert again.status_code == 304
        assert client.get("/nope.js").status_code == 404
        assert client.post("/app.js").status_code == 405
    samples = wait_for(
        metrics,
        lambda m: (
            value(m, "qkhyper_static_requests_total", code="200") == 1
            and value(m, "qkhyper_static_requests_total", code="304") == 2
        ),
    )
    assert value(samples, "qkhyper_static_not_modified_total") == 2
    assert value(samples, "qkhyper_static_requests_total", code="404") == 1
    assert value(samples, "qkhyper_static_requests_total", code="405") == 1
    assert value(samples, "qkhyper_static_sent_bytes_total") >= 1000
    assert value(samples, "qkhyper_static_cache_hits_total") == 2  # the 304s, from the resolved-path cache
    assert value(samples, "qkhyper_static_cache_misses_total") == 2  # the first /app.js and /nope.js
    assert get_json(metrics, "/healthz")[0] == 200
    assert "qkhyper_gateway_requests_total" not in scrape(metrics)  # no API request was made
