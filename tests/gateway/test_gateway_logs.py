"""The gateway's lines as a machine reads them: `access_log_format = "json"`, `log_format = "json"`."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.conftest import Qkhyper, free_port, get, json_objects
from tests.gateway.conftest import StackFactory

JSON_ACCESS = 'access_log = true\naccess_log_format = "json"'


def test_json_mode_access_lines_and_a_workers_warning(stack: StackFactory) -> None:
    dead = free_port()
    s = stack(("--upstream", f"/dead:127.0.0.1:{dead}"), gateway_table=JSON_ACCESS, qkhyper='log_format = "json"')
    assert get(f"{s.url}/up/echo?x=1").status_code == 200
    assert get(f"{s.url}/dead/x").status_code == 502
    s.gateway.wait_for(r'"status":502')
    s.gateway.signal(signal.SIGTERM)
    assert s.gateway.wait() == 0
    objects = json_objects(s.gateway.lines)
    access = [o for o in objects if o.get("logger") == "qkhyper.access"]
    assert [(o["app"], o["route"], o["status"], o["method"], o["path"]) for o in access] == [
        ("gateway", "/up", 200, "GET", "/up/echo"),
        ("gateway", "/dead", 502, "GET", "/dead/x"),
    ]
    assert access[0]["upstream"] == f"127.0.0.1:{s.upstream_port}" and access[1]["upstream"] is None
    assert access[0]["client"] == "127.0.0.1" and all(o["duration_ms"] >= 0 for o in access)
    assert access[0]["msg"] == "GET /up/echo 200"
    # A record of the worker's own qkhyper loggers, JSON too.
    [warning] = [o for o in objects if o.get("logger") == "qkhyper.proxy"]
    assert warning["level"] == "warning" and f"connect to 127.0.0.1:{dead} failed" in warning["msg"]
    assert warning["request_id"] == access[1]["request_id"]  # the warning and its access line share the ID
    assert any(o["msg"].startswith("route /up -> ") for o in objects if o["app"] == "qkhyper")
    assert s.serve is not None
    assert json_objects(s.serve.lines)  # serve read log_format from the same file


def test_text_mode_with_json_access_lines(stack: StackFactory) -> None:
    s = stack(gateway_table=JSON_ACCESS)
    get(f"{s.url}/up/echo")
    line = s.gateway.wait_for(r"^gateway \| (\{.*\})$").group(1)
    fields = json.loads(line)
    assert (fields["route"], fields["status"], fields["path"], fields["app"]) == ("/up", 200, "/up/echo", "gateway")
    assert s.gateway.wait_for(r"^qkhyper +\| ready: ")  # the rest stays text


def test_log_level_quiets_the_workers_records(stack: StackFactory, run_qkhyper: type[Qkhyper], project: Path) -> None:
    """--log-level warning: the worker's access lines (info) go, its warnings stay."""
    s = stack()
    port, dead = free_port(), free_port()
    args = ["--access-log", "--log-level", "warning", "--log-format", "json", "--upstream", f"/dead:127.0.0.1:{dead}"]
    gateway = run_qkhyper(["gateway", "--config", str(s.config), "--port", str(port), *args], project)
    gateway.wait_for(r'"msg":"app +prefix +url +pids"')  # "ready:" is an info record: not shown
    assert get(f"http://127.0.0.1:{port}/up/echo").status_code == 200
    assert get(f"http://127.0.0.1:{port}/dead/x").status_code == 502
    gateway.signal(signal.SIGTERM)
    assert gateway.wait() == 0  # the worker wrote everything before it exited
    records = [o for o in json_objects(gateway.lines) if "logger" in o]
    assert [o["logger"] for o in records if o["app"] == "gateway"] == ["qkhyper.proxy"]
    assert all(o["level"] != "info" for o in records)


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_access_log_format_flag_bytes_and_a_websocket_line(stack: StackFactory, backend: str) -> None:
    """--access-log-format json beats the table's combined; sizes are what the client got; a WebSocket has its line."""
    dead = free_port()
    args = (
        "--access-log",
        "--access-log-format",
        "json",
        "--backend",
        backend,
        "--upstream",
        f"/dead:127.0.0.1:{dead}",
    )
    s = stack(args, gateway_table='access_log_format = "combined"')
    ok, failed = get(f"{s.url}/up/echo"), get(f"{s.url}/dead/x")
    with connect(f"ws://127.0.0.1:{s.port}/up/ws", additional_headers={"X-Request-ID": "ws-1"}) as ws:
        ws.send("hé")
        assert ws.recv(timeout=15) == "hé"
        ws.send(b"abcd")
        assert ws.recv(timeout=15) == b"abcd"
    lines = {}
    for status in (200, 502, 101):
        found = s.gateway.wait_for(rf'^gateway \| (\{{.*"status":{status},.*\}})$').group(1)
        lines[status] = json.loads(found)
    assert lines[200]["bytes"] == len(ok.content) > 0 and lines[200]["path"] == "/up/echo"
    assert lines[502]["bytes"] == len(failed.content) > 0 and lines[502]["request_id"] == failed.json()["request_id"]
    websocket = lines[101]
    assert (websocket["method"], websocket["path"], websocket["route"]) == ("GET", "/up/ws", "/up")
    assert (websocket["bytes"], websocket["bytes_in"], websocket["request_id"]) == (7, 7, "ws-1")
    assert websocket["upstream"] == f"127.0.0.1:{s.upstream_port}"
