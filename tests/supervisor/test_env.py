"""Per-app environment through real `qkhyper serve` and `check`: in the app at import, never on show."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from tests.conftest import Qkhyper, clean_env, free_port, get, run_cli, write_config

SECRET = "hunter2-do-not-print"
INHERITED = {f"QKT_{k}": "inherited" for k in "ABCD"}


def _project_env(project: Path) -> tuple[Path, int, int]:
    (project / "all.env").write_text(f"QKT_B=global\nQKT_C=global\nQKT_D=global\nQKT_SECRET='{SECRET}'\n")
    (project / "users.env").write_text("QKT_C=file\nQKT_D=file\n")
    users, orders = free_port(), free_port()
    apps: list[dict[str, object]] = [
        {"name": "users", "app": "apps.envprobe:app", "port": users, "env_file": "users.env"},
        {"name": "orders", "app": "apps.envprobe:other", "port": orders},
    ]
    config = write_config(project, apps, qkhyper='env_file = "all.env"')
    # TOML inline table for the users app: after its own keys.
    text = config.read_text().replace('env_file = "users.env"', 'env_file = "users.env"\nenv = { QKT_D = "table" }')
    config.write_text(text)
    return config, users, orders


def test_layers_reach_the_app_before_import_and_secrets_stay_hidden(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    config, users, orders = _project_env(project)
    server = run_qkhyper(["serve", "--config", str(config)], project, clean_env(**INHERITED))
    server.wait_ready()
    seen = get(f"http://127.0.0.1:{users}/env").json()
    assert seen["env"] == {
        "QKT_A": "inherited",
        "QKT_B": "global",
        "QKT_C": "file",
        "QKT_D": "table",
        "QKT_SECRET": SECRET,
    }
    other = get(f"http://127.0.0.1:{orders}/env").json()
    assert {k: other["env"][k] for k in ("QKT_A", "QKT_B", "QKT_C", "QKT_D")} == {
        "QKT_A": "inherited",
        "QKT_B": "global",
        "QKT_C": "global",
        "QKT_D": "global",
    }
    assert SECRET not in server.output  # the ready table and every log line
    for pid in (server.proc.pid, seen["pid"], other["pid"]):
        assert SECRET not in " ".join(psutil.Process(pid).cmdline())  # what `ps` shows every local user


def test_check_names_the_keys_and_never_the_values(project: Path) -> None:
    config, _, _ = _project_env(project)
    result = run_cli(["check", "--config", str(config)], project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "env users: QKT_B (all.env), QKT_C (users.env), QKT_D (env), QKT_SECRET (all.env)" in lines, result.stdout
    assert "env orders: QKT_B (all.env), QKT_C (all.env), QKT_D (all.env), QKT_SECRET (all.env)" in lines
    assert SECRET not in result.stdout + result.stderr
    assert "global" not in result.stdout and "table" not in result.stdout


@pytest.mark.parametrize("command", ["serve", "check"])
def test_missing_env_file_is_exit_2_naming_it(project: Path, command: str) -> None:
    config = write_config(project, [{"name": "users", "app": "apps.envprobe:app", "env_file": "secrets/users.env"}])
    result = run_cli([command, "--config", str(config)], project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"qkhyper: error: env file not found: secrets/users.env (resolved to {project / 'secrets/users.env'})"
    ]


def test_aio_runs_with_every_apps_variables(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    (project / "all.env").write_text("QKT_B=global\n")
    (project / "users.env").write_text("QKT_C=users-file\n")
    apps: list[dict[str, object]] = [
        {"name": "users", "app": "apps.envprobe:app", "env_file": "users.env"},
        {"name": "orders", "app": "apps.envprobe:other"},
    ]
    config = write_config(project, apps, qkhyper='env_file = "all.env"')
    port = free_port()
    server = run_qkhyper(["serve", "--aio", "--port", str(port), "--config", str(config)], project)
    server.wait_ready()
    seen = get(f"http://127.0.0.1:{port}/orders/env").json()["env"]
    assert seen == {"QKT_B": "global", "QKT_C": "users-file"}  # one process: one environment


def test_aio_refuses_two_values_of_one_variable(project: Path) -> None:
    config = write_config(
        project,
        [
            {"name": "users", "app": "apps.envprobe:app", "port": free_port()},
            {"name": "orders", "app": "apps.envprobe:other", "port": free_port()},
        ],
    )
    text = config.read_text()
    text = text.replace('app = "apps.envprobe:app"', 'app = "apps.envprobe:app"\nenv = { QKT_DB = "users" }')
    text = text.replace('app = "apps.envprobe:other"', 'app = "apps.envprobe:other"\nenv = { QKT_DB = "orders" }')
    config.write_text(text)
    result = run_cli(["serve", "--aio", "--config", str(config)], project)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "qkhyper: error: --aio runs every app in one process, but apps 'users' and 'orders' "
        "set QKT_DB to different values"
    )
