"""`qkhyper serve` as a user runs it: real processes, ports, signals and requests."""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import Qkhyper, clean_env, free_port, get, run_cli, write_config

BACKENDS = [
    pytest.param(["--backend", "hypercorn", "--worker-class", "asyncio"], id="hypercorn-asyncio"),
    pytest.param(["--backend", "hypercorn", "--worker-class", "uvloop"], id="hypercorn-uvloop"),
    pytest.param(["--backend", "hypercorn", "--worker-class", "trio"], id="hypercorn-trio"),
    pytest.param(["--backend", "uvicorn"], id="uvicorn"),
]


def probe_config(project: Path, **app: object) -> tuple[Path, int]:
    port = free_port()
    config = write_config(
        project, [{"name": "probe", "app": "apps.probe:app", "port": port, **app}], top="accesslog = '-'"
    )
    return config, port


@pytest.mark.parametrize("backend", BACKENDS)
def test_serve_one_app_runs_lifespan_and_stops_on_sigterm(
    project: Path, run_qkhyper: type[Qkhyper], backend: list[str]
) -> None:
    config, port = probe_config(project)
    log = project / "events.log"
    server = run_qkhyper(["serve", "probe", "--config", str(config), *backend], project, clean_env(PROBE_LOG=str(log)))
    server.wait_ready()
    body = get(f"http://127.0.0.1:{port}/scope").json()
    assert body["resource"] == {"name": "probe", "opened": True}
    assert body["pid"] in server.pids("probe")
    server.wait_for(r"^probe +\| .*GET /scope")  # the access line, labelled with the app
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert log.read_text().splitlines() == ["startup probe", "shutdown probe"]
    assert "Traceback" not in server.output


@pytest.mark.parametrize("backend", [BACKENDS[1], BACKENDS[3]])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_request_in_flight_finishes_on_graceful_stop(
    project: Path, run_qkhyper: type[Qkhyper], backend: list[str], signum: int
) -> None:
    config, port = probe_config(project)
    log = project / "events.log"
    server = run_qkhyper(["serve", "--config", str(config), *backend], project, clean_env(PROBE_LOG=str(log)))
    server.wait_ready()
    client, result = _slow_request_in_flight(port, log)
    server.signal(signum)
    server.wait_for("graceful shutdown")
    with pytest.raises(httpx.ConnectError):  # the listener is closed at once: refused, not left hanging
        _connect_after_listener_closed(port)
    client.join(30)
    assert result == {"status": 200, "body": {"slept": 2.0}}
    assert server.wait() == 0


def _slow_request_in_flight(port: int, log: Path) -> tuple[threading.Thread, dict[str, object]]:
    """A 2 s request from a thread, returned once the app is inside it; `result` has its answer at the end."""
    result: dict[str, object] = {}

    def slow_request() -> None:
        response = get(f"http://127.0.0.1:{port}/slow?seconds=2")
        result.update(status=response.status_code, body=response.json())

    client = threading.Thread(target=slow_request)
    client.start()
    _wait_for_request(log)
    return client, result


def _wait_for_request(log: Path) -> None:
    """Block until the app is inside the slow request (it records that in `log`)."""
    for _ in range(600):
        if log.exists() and "slow probe" in log.read_text():
            return
        threading.Event().wait(0.05)
    raise AssertionError("the slow request never reached the app")


def _connect_after_listener_closed(port: int) -> None:
    """New connections are refused once every copy of the listener is closed."""
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except ConnectionRefusedError as exc:
            raise httpx.ConnectError("refused") from exc
        except ConnectionResetError:
            pass  # queued just as the last listener closed: dropped, not left hanging
        threading.Event().wait(0.05)


def test_second_sigint_kills_at_once(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config, port = probe_config(project)
    log = project / "events.log"
    server = run_qkhyper(["serve", "--config", str(config)], project, clean_env(PROBE_LOG=str(log)))
    server.wait_ready()
    pid = server.pids("probe")[0]
    client = threading.Thread(target=lambda: _ignore_errors(get, f"http://127.0.0.1:{port}/slow?seconds=60"))
    client.start()
    _wait_for_request(log)
    server.signal(signal.SIGINT)
    server.wait_for("graceful shutdown")
    server.signal(signal.SIGINT)
    assert server.wait() == 1
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    client.join(30)


@pytest.mark.parametrize("backend", [BACKENDS[1], BACKENDS[3]])
def test_a_repeated_sigterm_keeps_draining(project: Path, run_qkhyper: type[Qkhyper], backend: list[str]) -> None:
    """timeout(1) and process managers send SIGTERM twice: the request in flight still completes."""
    config, port = probe_config(project)
    log = project / "events.log"
    server = run_qkhyper(["serve", "--config", str(config), *backend], project, clean_env(PROBE_LOG=str(log)))
    server.wait_ready()
    client, result = _slow_request_in_flight(port, log)
    server.signal(signal.SIGTERM)
    server.wait_for("SIGTERM: graceful shutdown$")
    server.signal(signal.SIGTERM)
    server.wait_for("SIGTERM: graceful shutdown continues")
    client.join(30)
    assert result == {"status": 200, "body": {"slept": 2.0}}
    assert server.wait() == 0
    assert log.read_text().splitlines()[-1] == "shutdown probe"


def _ignore_errors(func: object, *args: object) -> None:
    try:
        func(*args)  # type: ignore[operator]
    except httpx.HTTPError:
        pass


def test_sigquit_is_immediate(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config, _ = probe_config(project)
    log = project / "events.log"
    server = run_qkhyper(["serve", "--config", str(config)], project, clean_env(PROBE_LOG=str(log)))
    server.wait_ready()
    server.signal(signal.SIGQUIT)
    assert server.wait() == 0
    assert "immediate shutdown" in server.output
    assert log.read_text().splitlines() == ["startup probe"]  # no drain, no lifespan shutdown


def test_lifespan_startup_failure_is_exit_1_naming_the_app(project: Path) -> None:
    config = write_config(project, [{"name": "db", "app": "apps.broken:startup_fails"}])
    result = run_cli(["serve", "--config", str(config)], project)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("qkhyper: error: app 'db': lifespan startup failed")
    assert "database unreachable" in last
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("apps.import_error:app", "app 'bad': importing 'apps.import_error' failed: ModuleNotFoundError"),
        ("apps.syntax_error:app", "app 'bad': importing 'apps.syntax_error' failed: SyntaxError"),
        ("apps.missing:app", "app 'bad': cannot import 'apps.missing': no module named 'apps.missing'"),
        ("apps.probe:nope", "app 'bad': module 'apps.probe' has no attribute 'nope'"),
        ("apps.broken:not_an_app", "app 'bad': 'apps.broken:not_an_app' is a int, not an ASGI app"),
    ],
)
def test_import_failures_are_exit_1_naming_the_app(project: Path, target: str, message: str) -> None:
    config = write_config(project, [{"name": "bad", "app": target}])
    for command in (["serve"], ["check"]):
        result = run_cli([*command, "--config", str(config)], project)
        assert result.returncode == 1, result.stderr
        assert message in result.stderr.strip().splitlines()[-1]
        assert "Traceback" not in result.stderr


def test_one_failing_app_stops_the_others(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config = write_config(
        project,
        [{"name": "good", "app": "apps.probe:app"}, {"name": "db", "app": "apps.broken:startup_fails_after_probe"}],
    )
    pids = project / "pids"
    server = run_qkhyper(["serve", "--config", str(config)], project, clean_env(PROBE_PIDS=str(pids)))
    assert server.wait() == 1
    assert server.lines[-1].startswith("qkhyper: error: app 'db': lifespan startup failed")
    started = [int(p) for p in pids.read_text().split()]
    assert started
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in started)


@pytest.mark.parametrize("backend", [BACKENDS[1], BACKENDS[3]])
def test_a_failed_start_shuts_the_started_apps_down(
    project: Path, run_qkhyper: type[Qkhyper], backend: list[str]
) -> None:
    """App `good` has started in its own worker when `db` fails: `good`'s lifespan shutdown still runs."""
    events = project / "events.log"
    config = write_config(
        project,
        [{"name": "good", "app": "apps.probe:app"}, {"name": "db", "app": "apps.broken:startup_fails_after_probe"}],
    )
    pids = project / "pids"
    server = run_qkhyper(
        ["serve", "--config", str(config), *backend], project, clean_env(PROBE_PIDS=str(pids), PROBE_LOG=str(events))
    )
    assert server.wait() == 1
    assert server.lines[-1].startswith("qkhyper: error: app 'db': lifespan startup failed")
    assert events.read_text().splitlines() == ["startup probe", "shutdown probe"]
    assert "SIGKILL" not in server.output and "killing it" not in server.output


def test_port_in_use_is_exit_2_before_anything_runs(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            project,
            [{"name": "first", "app": "apps.probe:app"}, {"name": "users", "app": "apps.probe:app", "port": port}],
        )
        result = run_cli(["serve", "--config", str(config)], project)
    assert result.returncode == 2
    assert result.stderr.strip() == f"qkhyper: error: app 'users': port {port} on 127.0.0.1 is already in use"
    assert "Running on" not in result.stdout + result.stderr  # nothing was started


def test_unknown_app_and_bad_flags_are_exit_2(project: Path) -> None:
    config, _ = probe_config(project)
    result = run_cli(["serve", "prob", "--config", str(config)], project)
    assert result.returncode == 2
    assert result.stderr.strip() == "qkhyper: error: unknown app 'prob' (did you mean 'probe'?); apps: probe"
    result = run_cli(["serve", "--workers", "many"], project)
    assert result.returncode == 2 and "invalid int value" in result.stderr
    result = run_cli(["serve", "--exclude", "probe", "--config", str(config)], project)
    assert result.returncode == 2 and "no app left to serve" in result.stderr


def test_bad_config_is_one_line_exit_2(project: Path) -> None:
    (project / "hypercorn.toml").write_text("keep_alive_timout = 5\n")
    for command in (["serve"], ["check"], ["runserver-aio"]):
        result = run_cli(command, project)
        assert result.returncode == 2
        assert result.stderr == (
            "qkhyper: error: unknown key 'keep_alive_timout' at the top level (not a Hypercorn setting) "
            "(did you mean 'keep_alive_timeout'?)\n"
        )


def test_debug_shows_the_traceback(project: Path) -> None:
    (project / "hypercorn.toml").write_text("keep_alive_timout = 5\n")
    result = run_cli(["check", "--debug"], project)
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_missing_uvicorn_extra_is_exit_2(project: Path) -> None:
    config, _ = probe_config(project)
    code = "import sys; sys.modules['uvicorn'] = None; from qkhyper.cli import main; sys.exit(main(sys.argv[1:]))"
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", code, "serve", "--backend", "uvicorn", "--config", str(config)],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "qkhyper: error: the uvicorn backend is not installed: pip install 'qkhyper[uvicorn]'"
    )


def test_factory_auto_port_and_port_map(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config = write_config(project, [{"name": "made", "app": "apps.probe:factory()", "port": 0}])
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    url = server.wait_for(r"\| made\s+/made\s+(http://\S+)").group(1)
    assert get(f"{url}/scope").json()["resource"]["name"] == "factory"
    entry = json.loads((project / ".qkhyper" / "ports.json").read_text())["apps"]["made"]
    assert f"http://127.0.0.1:{entry['port']}" == url
    assert entry["prefix"] == "/made"


def test_bare_asgi_app_without_lifespan_support(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    port = free_port()
    config = write_config(project, [{"name": "plain", "app": "apps.broken:no_lifespan", "port": port}])
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    assert get(f"http://127.0.0.1:{port}/").text == "plain"


def test_runserver_alias_and_python_m(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config, port = probe_config(project)
    server = run_qkhyper(["runserver", "probe", "--config", str(config)], project)
    server.wait_ready()
    assert get(f"http://127.0.0.1:{port}/scope").status_code == 200


def test_help_lists_every_option_with_defaults(project: Path) -> None:
    for command in (
        ["--help"],
        ["serve", "--help"],
        ["runserver", "--help"],
        ["runserver-aio", "--help"],
        ["check", "--help"],
    ):
        result = run_cli(command, project)
        assert result.returncode == 0
        assert "--config" in result.stdout or command == ["--help"]
    serve_help = run_cli(["serve", "--help"], project).stdout
    for option in ("--aio", "--exclude", "--host", "--port", "--workers", "--backend", "--worker-class", "--debug"):
        assert option in serve_help
    assert serve_help.count("(default:") >= 9


def test_debug_puts_the_apps_traceback_in_its_log(project: Path) -> None:
    config = write_config(project, [{"name": "db", "app": "apps.broken:startup_fails"}])
    result = run_cli(["serve", "--debug", "--config", str(config)], project)
    assert result.returncode == 1
    assert any(
        line.startswith("db ") and 'raise RuntimeError("database unreachable")' in line
        for line in result.stderr.splitlines()
    )
