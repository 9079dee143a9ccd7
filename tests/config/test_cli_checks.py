"""Config and flag mistakes through the real command line: exit 2 and one line, from `check` and `serve` alike."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from qkhyper import api
from qkhyper.cli import build_parser, load
from tests.conftest import Qkhyper, free_port, get, run_cli, write_config


@pytest.mark.parametrize("command", ["check", "serve"])
def test_bad_trust_entry_is_exit_2_with_one_line(project: Path, command: str) -> None:
    config = write_config(
        project, [{"name": "users", "app": "apps.probe:app"}], qkhyper='forwarded_allow_ips = ["127.0.0.1", "proxy"]'
    )
    result = run_cli([command, "--config", str(config)], project)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "qkhyper: error: qkhyper.forwarded_allow_ips: 'proxy' is not an IP address, "
        'a network like 10.0.0.0/8, "unix" or "*"'
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "users", "--port", "70000"],
        ["serve", "--aio", "--port", "70000"],
        ["serve", "users", "--port", "-1"],
        ["gateway", "--port", "65536"],
        ["static", "--port", "99999"],
        ["serve", "users", "--port", "http"],
    ],
)
def test_port_flags_are_range_checked(project: Path, args: list[str]) -> None:
    config = write_config(project, [{"name": "users", "app": "apps.probe:app"}])
    result = run_cli([*args, "--config", str(config)], project, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "argument --port: must be a port number 0-65535, got" in last
    assert "ready:" not in result.stdout + result.stderr  # nothing was served


def test_check_prints_the_trust_list_and_the_warnings(project: Path) -> None:
    config = write_config(
        project,
        [{"name": "users", "app": "apps.probe:app"}],
        top='errorlog = "-"',
        qkhyper='forwarded_allow_ips = ["10.0.0.0/8", "*"]\nbackend = "uvicorn"',
    )
    text = config.read_text().replace('host = "127.0.0.1"', 'host = "0.0.0.0"')
    config.write_text(text)
    result = run_cli(["check", "--config", str(config)], project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "trusted: 10.0.0.0/8, * (X-Forwarded-* believed from these peers)" in lines
    assert f"control: {project / '.qkhyper' / 'control.sock'} (gateway, static: -gateway, -static beside it)" in lines
    assert "metrics: serve off, gateway off, static off" in lines
    assert "warning: listening on 0.0.0.0, beyond this machine (host is not loopback)" in lines
    assert any(line.startswith('warning: forwarded_allow_ips = ["*"]') for line in lines)
    assert "warning: backend uvicorn: these Hypercorn settings have no effect there: errorlog" in lines


def test_serve_warns_at_start_about_exposure(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    port = free_port()
    config = write_config(
        project, [{"name": "users", "app": "apps.probe:app", "port": port}], qkhyper='forwarded_allow_ips = ["*"]'
    )
    config.write_text(config.read_text().replace('host = "127.0.0.1"', 'host = "0.0.0.0"'))
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    assert get(f"http://127.0.0.1:{port}/scope").status_code == 200
    start = server.output.split("ready:")[0]
    assert "qkhyper | warning: listening on 0.0.0.0, beyond this machine" in start
    assert 'qkhyper | warning: forwarded_allow_ips = ["*"]' in start


def test_loopback_start_has_no_warning(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config = write_config(project, [{"name": "users", "app": "apps.probe:app"}])
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    assert "warning:" not in server.output


@pytest.mark.parametrize("command", ["serve", "gateway", "static"])
def test_log_flags_override_the_config_keys(project: Path, command: str) -> None:
    """--log-format is [qkhyper] log_format and --log-level the top-level loglevel: no new settings."""
    config = write_config(project, [{"name": "users", "app": "apps.probe:app"}], top="loglevel = 'error'")
    plain = load(build_parser().parse_args([command, "--config", str(config)]))
    assert plain.qkhyper.log_format == "text" and plain.hypercorn["loglevel"] == "error"
    args = build_parser().parse_args([command, "--config", str(config), "--log-format", "json", "--log-level", "DEBUG"])
    settings = load(args)
    assert settings.qkhyper.log_format == "json" and settings.hypercorn["loglevel"] == "debug"


@pytest.mark.parametrize("command", ["gateway", "static"])
def test_access_log_flags_override_their_tables_keys(project: Path, command: str) -> None:
    """--access-log-format is access_log_format of the command's own table (static's API prefix shares the core)."""
    config = write_config(project, [{"name": "users", "app": "apps.probe:app"}])
    config.write_text(config.read_text() + f'\n[qkhyper.{command}]\naccess_log_format = "combined"\n')
    plain = load(build_parser().parse_args([command, "--config", str(config)]))
    assert getattr(plain.qkhyper, command).access_log_format == "combined"
    args = [command, "--config", str(config), "--access-log", "--access-log-format", "json"]
    table = getattr(load(build_parser().parse_args(args)).qkhyper, command)
    assert (table.access_log, table.access_log_format) == (True, "json")
    other = "static" if command == "gateway" else "gateway"
    assert getattr(load(build_parser().parse_args(args)).qkhyper, other).access_log_format == "combined"
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--access-log-format", "apache"])


def test_check_prints_the_log_settings(project: Path) -> None:
    config = write_config(project, [{"name": "users", "app": "apps.probe:app"}], qkhyper='log_format = "json"')
    tables = (
        '\n[qkhyper.gateway]\naccess_log = true\n[qkhyper.static]\nrequest_id = false\naccess_log_format = "json"\n'
    )
    config.write_text(config.read_text() + tables)
    out = io.StringIO()
    assert api.check(load(build_parser().parse_args(["check", "--config", str(config)])), out) == 0
    assert (
        "logs:    json; gateway access log combined, request IDs on; static API access log off, request IDs off"
        in out.getvalue().splitlines()
    )


def test_check_prints_where_each_metrics_listener_is(project: Path) -> None:
    config = write_config(project, [{"name": "users", "app": "apps.probe:app"}], qkhyper="metrics_port = 9101")
    config.write_text(config.read_text() + "[qkhyper.gateway]\nmetrics_port = 9100\n")
    result = run_cli(["check", "--config", str(config)], project)
    assert result.returncode == 0, result.stderr
    assert "metrics: serve 127.0.0.1:9101, gateway 127.0.0.1:9100, static off" in result.stdout.splitlines()
