"""`static`'s API prefix, proxied through the shared proxy core (prefix stripped)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from websockets.sync.client import connect

from tests.conftest import Qkhyper, free_port, get, run_cli, write_config


def test_api_prefix_goes_to_the_target_stripped(project: Path, run_qkhyper: type[Qkhyper], tmp_path: Path) -> None:
    upstream = free_port()
    config = write_config(project, [{"name": "up", "app": "apps.upstream:app", "port": upstream}])
    run_qkhyper(["serve", "--config", str(config)], project).wait_ready()
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><title>site</title>")
    port = free_port()
    args = ["static", "--root", str(root), "--port", str(port), "--api-target", f"http://127.0.0.1:{upstream}"]
    run_qkhyper([*args, "--config", str(config)], project).wait_ready()
    base = f"http://127.0.0.1:{port}"

    seen = get(f"{base}/api/echo?x=1").json()
    assert (seen["route"], seen["query"]) == ("/echo", "x=1")
    assert httpx.post(f"{base}/api/echo", content=b"z" * 5000).json()["body_size"] == 5000
    with httpx.stream("GET", f"{base}/api/events?count=2&pause=0.1") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert [line for line in response.iter_lines() if line] == ["data: event 0", "data: event 1"]
    with connect(f"ws://127.0.0.1:{port}/api/ws") as ws:
        ws.send("through static")
        assert ws.recv() == "through static"
    assert get(f"{base}/").text.startswith("<!doctype html>")


def test_api_prefix_keeps_or_makes_a_request_id(project: Path, run_qkhyper: type[Qkhyper], tmp_path: Path) -> None:
    upstream = free_port()
    config = write_config(project, [{"name": "up", "app": "apps.upstream:app", "port": upstream}])
    run_qkhyper(["serve", "--config", str(config)], project).wait_ready()
    (tmp_path / "site").mkdir()
    port = free_port()
    args = ["static", "--root", str(tmp_path / "site"), "--port", str(port)]
    run_qkhyper([*args, "--api-target", f"http://127.0.0.1:{upstream}", "--config", str(config)], project).wait_ready()
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    kept = get(f"http://127.0.0.1:{port}/api/echo", headers={"X-Request-ID": "spa-1", "traceparent": trace})
    seen = dict(kept.json()["headers"])
    assert (seen["x-request-id"], seen["traceparent"], kept.headers["x-request-id"]) == ("spa-1", trace, "spa-1")
    made = get(f"http://127.0.0.1:{port}/api/echo", headers={"X-Request-ID": "x" * 129})
    assert re.fullmatch("[0-9a-f]{32}", made.headers["x-request-id"])
    assert dict(made.json()["headers"])["x-request-id"] == made.headers["x-request-id"]


def test_dead_api_target_is_502_json(project: Path, run_qkhyper: type[Qkhyper], tmp_path: Path) -> None:
    root = tmp_path / "site"
    root.mkdir()
    port = free_port()
    args = ["static", "--root", str(root), "--port", str(port), "--api-target", f"http://127.0.0.1:{free_port()}"]
    run_qkhyper(args, project).wait_ready()
    response = get(f"http://127.0.0.1:{port}/api/users/")
    assert response.status_code == 502
    rid = response.headers["x-request-id"]
    assert response.json() == {
        "error": "bad gateway",
        "route": "/api",
        "reason": "upstream refused the connection",
        "request_id": rid,
    }


def test_bad_api_target_is_exit_2(project: Path, tmp_path: Path) -> None:
    for target, why in (
        ("127.0.0.1:8000", "must look like http(s)://HOST[:PORT][/base] (scheme missing)"),
        ("http://127.0.0.1:0", "port 0 is outside 1-65535"),
        ("ftp://x", "must look like http(s)://HOST[:PORT][/base] (scheme ftp)"),
    ):
        result = run_cli(["static", "--root", str(tmp_path), "--api-target", target], project)
        assert result.returncode == 2
        assert result.stderr.strip().startswith(f"qkhyper: error: --api-target: {target!r}")
        assert result.stderr.strip().endswith(why) and "\n" not in result.stderr.strip()
