"""`log_format = "json"` through a real `qkhyper serve`: every line one object, an app's JSON merged."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from tests.conftest import Qkhyper, clean_env, free_port, get, json_objects, run_cli, write_config

BACKENDS = [
    pytest.param(["--backend", "hypercorn", "--worker-class", "asyncio"], id="hypercorn"),
    pytest.param(["--backend", "hypercorn", "--worker-class", "trio"], id="hypercorn-trio"),
    pytest.param(["--backend", "uvicorn"], id="uvicorn"),
]


def jsonlines_config(project: Path, qkhyper: str = 'log_format = "json"') -> tuple[Path, int]:
    port = free_port()
    app = {"name": "jl", "app": "apps.jsonlines:app", "port": port}
    return write_config(project, [app], top="accesslog = '-'", qkhyper=qkhyper), port


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_line_is_one_object(project: Path, run_qkhyper: type[Qkhyper], backend: list[str]) -> None:
    config, port = jsonlines_config(project)
    server = run_qkhyper(["serve", "--config", str(config), *backend], project)
    server.wait_ready()
    assert get(f"http://127.0.0.1:{port}/hello").text == "ok"
    server.wait_for(r"GET /hello")  # the server's access line
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    objects = json_objects(server.lines)
    pids = {o["pid"] for o in objects if o["app"] == "jl"}
    assert len(pids) == 1 and pids != {server.proc.pid}
    assert {o["pid"] for o in objects if o["app"] == "qkhyper"} == {server.proc.pid}
    by_msg = {o["msg"]: o for o in objects}
    # The app's own JSON line, merged: its keys and level kept, the label as app.
    started = by_msg["app started"]
    assert (started["app"], started["level"], started["answer"], started["app_own"]) == (
        "jl",
        "warning",
        42,
        "self-named",
    )
    assert by_msg["request"]["path"] == "/hello" and by_msg["request"]["event"] == "request"
    # Its plain lines: msg, info unless they name a level.
    assert by_msg["a plain line from the app"]["level"] == "info"
    assert by_msg["WARNING: a plain line that names its level"]["level"] == "warning"
    # The server's own loggers wrote JSON themselves (a plain line would have no logger).
    loggers = {o.get("logger") for o in objects if o["app"] == "jl"}
    assert loggers & {"hypercorn.error", "uvicorn.error"}, loggers
    assert loggers & {"hypercorn.access", "uvicorn.access"}, loggers
    # The supervisor's records, with their fields.
    assert any(o["msg"].startswith("ready: 1 app(s)") for o in objects if o["app"] == "qkhyper")
    stopped = [o for o in objects if o.get("logger") == "qkhyper.supervisor" and "exit_code" in o]
    assert [o["exit_code"] for o in stopped if o.get("worker_app") == "jl"] == [0]
    assert stopped[-1]["msg"] == "stopped (exit code 0)" and stopped[-1]["exit_code"] == 0


def test_text_mode_relays_an_apps_json_line_as_it_is(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config, _ = jsonlines_config(project, qkhyper="")
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    server.wait_for(r'^jl +\| {"msg": "app started", "level": "warning", "answer": 42, "app": "self-named"}$')
    server.wait_for(r"^jl +\| a plain line from the app$")


def test_log_format_and_log_level_flags(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    """--log-level is the top-level `loglevel`: it quiets qkhyper, its workers and their servers alike."""
    config, port = jsonlines_config(project, qkhyper="")
    args = ["serve", "--config", str(config), "--log-format", "json", "--log-level", "WARNING"]
    server = run_qkhyper(args, project)
    server.wait_for(r'"msg":"app +prefix +url +pids"')  # the ready table is output, not a log record
    assert get(f"http://127.0.0.1:{port}/hello").text == "ok"
    server.wait_for(r'"msg":"WARNING: a plain line that names its level"')
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    objects = json_objects(server.lines)
    assert "request" in {o["msg"] for o in objects}  # the app's own output is not a log record: relayed
    records = [o for o in objects if "logger" in o]
    assert records == [o for o in records if o["level"] != "info"] and not any("ready:" in o["msg"] for o in objects)


def test_environment_sets_the_format(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config, _ = jsonlines_config(project, qkhyper="")
    server = run_qkhyper(["serve", "--config", str(config)], project, clean_env(QKHYPER_LOG_FORMAT="json"))
    server.wait_ready()
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert json_objects(server.lines)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            [],
            {"QKHYPER_LOG_FORMAT": "yaml"},
            "qkhyper: error: qkhyper.log_format must be one of text, json, got 'yaml'",
        ),
        (["--log-format", "xml"], {}, "argument --log-format: invalid choice: 'xml' (choose from 'text', 'json')"),
        (["--log-level", "loud"], {}, "argument --log-level: invalid choice: 'loud'"),
    ],
)
def test_bad_values_are_exit_2(project: Path, args: list[str], env: dict[str, str], message: str) -> None:
    config, _ = jsonlines_config(project, qkhyper="")
    result = run_cli(["serve", "--config", str(config), *args], project, clean_env(**env), timeout=30)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
    assert "ready:" not in result.stdout + result.stderr


def test_check_rejects_a_bad_log_format_in_one_line(project: Path) -> None:
    config, _ = jsonlines_config(project, qkhyper='log_format = "xml"')
    result = run_cli(["check", "--config", str(config)], project)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["qkhyper: error: qkhyper.log_format must be one of text, json, got 'xml'"]


def test_a_failure_after_the_config_loaded_ends_with_a_json_line(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(project, [{"name": "jl", "app": "apps.jsonlines:app", "port": port}])
        result = run_cli(["serve", "--config", str(config), "--log-format", "json"], project)
    assert result.returncode == 2
    *_, line = json_objects(result.stderr.splitlines())
    assert (line["app"], line["level"]) == ("qkhyper", "error")
    assert line["msg"] == f"error: app 'jl': port {port} on 127.0.0.1 is already in use"
