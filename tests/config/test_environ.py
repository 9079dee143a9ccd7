"""Per-app environment: dotenv files, the order of the layers, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from qkhyper.config import load_settings
from qkhyper.config.environ import AppEnvironment, app_environment, read_env_file, shared_environment
from qkhyper.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("A=1\nB='x y'\n", {"A": "1", "B": "x y"}),
        ("export A=1\n", {"A": "1"}),
        ("# a comment\n\nA=1  # trailing comment\n", {"A": "1"}),
        ('A="two\nlines"\n', {"A": "two\nlines"}),
        ("A=\n", {"A": ""}),
        ("HOMEISH=${HOME}/x\n", {"HOMEISH": "/h/x"}),  # from the layers below
        ("A=1\nB=${A}2\n", {"A": "1", "B": "12"}),  # from earlier lines
        ("A=${NOPE:-fallback}\n", {"A": "fallback"}),
        ("A='${HOME}'\n", {"A": "${HOME}"}),  # single quotes: literal, as in docker compose
        ('A="${HOME}"\n', {"A": "/h"}),
        ("A=$HOME\n", {"A": "$HOME"}),  # python-dotenv expands ${VAR} only
    ],
)
def test_env_files(tmp_path: Path, text: str, values: dict[str, str]) -> None:
    path = tmp_path / "app.env"
    path.write_text(text)
    assert read_env_file(path, "app.env", {"HOME": "/h"}) == values


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("this is not a line\n", "env file app.env, line 1: not KEY=VALUE"),
        ("A=1\n\n# note\nSECRET hunter2\n", "env file app.env, line 4: not KEY=VALUE"),
        ("A=1\nTOKEN\n", "env file app.env, line 2: TOKEN has no value (write TOKEN= for '')"),
        ("A-B=1\n", "env file app.env, line 1: not KEY=VALUE"),
        ("A='unterminated\n", "env file app.env, line 1: not KEY=VALUE"),
    ],
)
def test_env_file_mistakes_name_file_and_line_never_the_text(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "app.env"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_env_file(path, "app.env", {})
    assert str(info.value) == message
    assert "hunter2" not in str(info.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^env file not found: gone.env \(resolved to .*/gone.env\)$"):
        read_env_file(tmp_path / "gone.env", "gone.env", {})
    (tmp_path / "bin.env").write_bytes(b"A=\xff\n")
    with pytest.raises(ConfigError, match="^cannot read env file bin.env: not UTF-8$"):
        read_env_file(tmp_path / "bin.env", "bin.env", {})


def _settings(tmp_path: Path, top: str, app: str):
    config = tmp_path / "hypercorn.toml"
    config.write_text(f"[qkhyper]\n{top}\n[[qkhyper.apps]]\nname = 'users'\napp = 'm:a'\n{app}\n")
    return load_settings(str(config), env={})


def test_layers_app_env_over_app_file_over_global_file_over_inherited(tmp_path: Path) -> None:
    (tmp_path / "all.env").write_text("B=global\nC=global\nD=global\nURL=http://${HOST}\nHOST=db\n")
    (tmp_path / "users.env").write_text("C=file\nD=file\nDSN=${HOST}/users\n")
    settings = _settings(tmp_path, "env_file = 'all.env'", "env_file = 'users.env'\nenv = { D = 'table' }")
    inherited = {"A": "inherited", "B": "inherited", "C": "inherited", "D": "inherited", "HOST": "shell"}
    env = app_environment(settings, settings.app("users"), inherited)
    assert env.values == {
        "B": "global",
        "C": "file",
        "D": "table",
        "URL": "http://shell",  # HOST was not yet set by the file: the layer below
        "HOST": "db",
        "DSN": "db/users",  # the app's file sees the global file
    }
    assert env.sources == {
        "B": "all.env",
        "C": "users.env",
        "D": "env",
        "URL": "all.env",
        "HOST": "all.env",
        "DSN": "users.env",
    }
    assert "table" not in repr(env)  # values stay out of any repr


def test_env_files_resolve_from_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "users.env").write_text("A=1\n")
    monkeypatch.chdir(tmp_path)
    settings = _settings(tmp_path / "deploy", "", "env_file = 'users.env'")
    assert app_environment(settings, settings.app("users"), {}).values == {"A": "1"}


def test_aio_shares_one_environment() -> None:
    users = AppEnvironment({"A": "1", "B": "2"}, {"A": "env", "B": "env"})
    orders = AppEnvironment({"A": "1", "C": "3"}, {"A": "g.env", "C": "env"})
    assert shared_environment({"users": users, "orders": orders}).values == {"A": "1", "B": "2", "C": "3"}
    clash = AppEnvironment({"B": "other"}, {"B": "env"})
    with pytest.raises(ConfigError, match="apps 'users' and 'orders' set B to different values"):
        shared_environment({"users": users, "orders": clash})


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("env = { '1X' = 'a' }", "qkhyper.apps[0].env: '1X' is not a variable name"),
        ("env = { 'A-B' = 'a' }", "qkhyper.apps[0].env: 'A-B' is not a variable name"),
        ("env = { A = 1 }", "qkhyper.apps[0].env.A must be a string, got 1"),
        ('env = { A = "x\\u0000y" }', "qkhyper.apps[0].env.A holds a NUL character"),
        ("env = 'A=1'", "qkhyper.apps[0].env must be a table"),
        ("env_file = 3", "qkhyper.apps[0].env_file must be a string"),
        ("envfile = 'x'", "unknown key 'envfile' in [qkhyper.apps[0]] (did you mean 'env_file'?)"),
    ],
)
def test_env_key_mistakes(tmp_path: Path, app: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _settings(tmp_path, "", app)
    assert message in str(info.value)


def test_global_env_file_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "hypercorn.toml"
    config.write_text("[[qkhyper.apps]]\nname = 'users'\napp = 'm:a'\n")
    settings = load_settings(str(config), env={"QKHYPER_ENV_FILE": "prod.env"})
    assert settings.qkhyper.env_file == "prod.env"
