"""Apps on unix sockets, served by real `qkhyper serve` processes on both backends."""

from __future__ import annotations

import os
import signal
import socket
import stat
from pathlib import Path

import httpx
import pytest

from tests.conftest import Qkhyper, clean_env, free_port, run_cli, write_config

BACKENDS = ["hypercorn", "hypercorn-trio", "uvicorn"]


def _flags(backend: str) -> list[str]:
    return (
        ["--backend", "hypercorn", "--worker-class", "trio"] if backend == "hypercorn-trio" else ["--backend", backend]
    )


def unix_config(project: Path, path: Path, extra: str = "", qkhyper: str = "") -> Path:
    config = write_config(project, [{"name": "users", "app": "apps.probe:app", "port": 0}], qkhyper=qkhyper)
    text = config.read_text().replace("port = 0", f'bind = "unix:{path}"\n{extra}')
    config.write_text(text)
    return config


def over_unix(path: Path, url: str, **kwargs: object) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=30) as client:
        return client.get(f"http://qkhyper{url}", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_app_served_on_a_unix_socket(project: Path, run_qkhyper: type[Qkhyper], backend: str) -> None:
    path = project / "users.sock"
    config = unix_config(project, path, f'socket_mode = 0o660\nsocket_group = "{os.getgid()}"')
    server = run_qkhyper(["serve", "--config", str(config), *_flags(backend)], project)
    server.wait_ready()
    server.wait_for(rf"\| users +/users +unix:{path} +\d+")
    info = os.stat(path)
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o660 and info.st_gid == os.getgid()
    seen = over_unix(path, "/scope").json()
    assert seen["resource"] == {"name": "probe", "opened": True} and seen["client"] is None
    # A unix-socket peer (nginx in front, say) is trusted by default, like 127.0.0.1.
    behind = over_unix(path, "/scope", headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Prefix": "/u"}).json()
    assert (behind["client"], behind["root_path"]) == ("203.0.113.9", "/u")
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert not path.exists()  # removed on exit


def test_unix_peers_are_not_believed_without_the_unix_entry(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    path = project / "users.sock"
    config = unix_config(project, path, qkhyper='forwarded_allow_ips = ["127.0.0.1"]')
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    seen = over_unix(path, "/scope", headers={"X-Forwarded-For": "203.0.113.9"}).json()
    assert seen["client"] is None


def test_relative_bind_resolves_from_the_config_folder(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    (project / "run").mkdir()
    config = unix_config(project, Path("run/users.sock"))
    server = run_qkhyper(["serve", "--config", str(config)], project / "run")  # another working folder
    server.wait_ready()
    assert over_unix(project / "run" / "users.sock", "/scope").status_code == 200


def test_a_stale_socket_file_is_replaced(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    path = project / "users.sock"
    with socket.socket(socket.AF_UNIX) as dead:  # a run that died: its file stays, nobody accepts
        dead.bind(str(path))
        dead.listen()
    assert path.exists()
    server = run_qkhyper(["serve", "--config", str(unix_config(project, path))], project)
    server.wait_ready()
    assert over_unix(path, "/scope").status_code == 200


def test_a_live_socket_is_exit_2(project: Path) -> None:
    path = project / "users.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        result = run_cli(["serve", "--config", str(unix_config(project, path))], project)
        assert result.returncode == 2
        assert result.stderr.strip() == (
            f"qkhyper: error: app 'users': unix:{path} is in use by a running server (it accepts connections)"
        )
        assert path.exists()  # left alone


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("notes"), "the path exists and is not a socket; qkhyper will not replace it"),
        (lambda p: None, "cannot listen there: No such file or directory"),
    ],
    ids=["regular-file", "missing-folder"],
)
def test_what_is_not_a_stale_socket_is_exit_2(project: Path, make: object, message: str) -> None:
    path = project / "users.sock" if "socket" in message else project / "nope" / "users.sock"
    make(path)  # type: ignore[operator]
    result = run_cli(["serve", "--config", str(unix_config(project, path))], project)
    assert result.returncode == 2
    assert result.stderr.strip() == f"qkhyper: error: app 'users': unix:{path}: {message}"
    if path.parent.exists():
        assert path.read_text() == "notes"


def test_port_flag_moves_a_unix_app_to_tcp(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    path = project / "users.sock"
    port = free_port()
    server = run_qkhyper(["serve", "users", "--port", str(port), "--config", str(unix_config(project, path))], project)
    server.wait_ready()
    assert httpx.get(f"http://127.0.0.1:{port}/scope", timeout=30).status_code == 200
    assert not path.exists()


def test_gateway_refuses_a_unix_app_it_cannot_reach(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    path = project / "users.sock"
    config = unix_config(project, path)
    result = run_cli(["gateway", "--port", str(free_port()), "--config", str(config)], project)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"qkhyper: error: app 'users' listens on unix:{path}, and the gateway proxies to TCP only: "
        "give the app a port, or send /users elsewhere with --upstream or [qkhyper.gateway].upstreams"
    )
    elsewhere = free_port()
    port = free_port()
    gateway = run_qkhyper(
        ["gateway", "--port", str(port), "--upstream", f"users:127.0.0.1:{elsewhere}", "--config", str(config)],
        project,
        clean_env(),
    )
    gateway.wait_ready()
    gateway.wait_for(rf"route /users -> 127.0.0.1:{elsewhere}$")
