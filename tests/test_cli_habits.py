"""Old spellings and habits from uvicorn and gunicorn (issue 12, item 5): parser and settings in-process,
what needs a process (serving, a closed pipe) through the real command line."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from qkhyper import api, cli
from qkhyper.config import load_settings
from qkhyper.config.import_target import import_target
from qkhyper.errors import ConfigError, UsageError
from qkhyper.supervisor.plan import Selection, make_plan, select_apps
from tests.conftest import Qkhyper, clean_env, free_port, get, run_cli, write_config

PROBE = "apps.probe:app"


def settings_of(args: list[str]) -> tuple[cli.argparse.Namespace, api.Settings]:
    parsed = cli.parse(args)
    return parsed, cli.load(parsed)


# -- old spellings -------------------------------------------------------------------------------------------


def test_serve_all_means_every_app_unless_an_app_is_called_all(project: Path) -> None:
    config = write_config(project, [{"name": "users", "app": PROBE}, {"name": "orders", "app": PROBE}])
    settings = load_settings(str(config))
    assert select_apps(settings, ["all"], []) == ["users", "orders"]
    assert select_apps(settings, ["all"], ["orders"]) == ["users"]
    config = write_config(project, [{"name": "users", "app": PROBE}, {"name": "all", "app": PROBE}])
    assert select_apps(load_settings(str(config)), ["all"], []) == ["all"]


@pytest.mark.parametrize(
    ("args", "port"),
    [(["runserver-aio"], 8080), (["runserver-aio", "--port", "9001"], 9001), (["serve", "--aio"], 8000)],
)
def test_runserver_aio_keeps_its_old_port(project: Path, args: list[str], port: int) -> None:
    config = write_config(project, [{"name": "users", "app": PROBE}])
    parsed, settings = settings_of([*args, "-c", str(config)])
    plan = make_plan(settings, Selection(parsed.apps, parsed.exclude, parsed.aio, parsed.port, parsed.workers))
    assert [(unit.label, unit.port) for unit in plan.units] == [("aio", port)]


# -- paths ---------------------------------------------------------------------------------------------------


def test_command_line_paths_are_relative_to_the_current_folder(
    project: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(project, [{"name": "users", "app": PROBE}])
    (project / "static").mkdir()
    elsewhere = tmp_path_factory.mktemp("cwd")
    (elsewhere / "dist").mkdir()
    monkeypatch.chdir(elsewhere)
    _, settings = settings_of(["static", "--root", "dist", "-c", str(config)])
    assert api.static_options(settings).root == str(elsewhere / "dist")
    _, settings = settings_of(["static", "-c", str(config)])  # the config's ./static: from the config's folder
    assert api.static_options(settings).root == str(project / "static")
    parsed = cli.parse(["serve", "--reload-dir", "src", "-c", str(config)])
    assert parsed.reload_dir == [str(elsewhere / "src")]


# -- uvicorn's module:app ------------------------------------------------------------------------------------


def test_an_import_target_replaces_the_apps(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)  # no hypercorn.toml here: the demo's settings, none of its apps
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    parsed, settings = settings_of(["serve", PROBE])
    assert [(s.name, s.app, s.workers) for s in settings.qkhyper.apps] == [("probe", PROBE, 3)]
    assert settings.base_dir == project
    plan = make_plan(settings, Selection([], [], False, parsed.port, cli.workers(parsed)))
    assert [(u.label, u.port, u.workers) for u in plan.units] == [("probe", 8000, 3)]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["bad:"], "'bad:' must look like 'module:attribute'"),
        (["x:app", "users"], "serve x:app serves that one app"),
        (["1x:app"], "must look like"),
    ],
)
def test_import_target_mistakes(names: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        import_target(names)


def test_serve_module_app_without_a_config(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    port = free_port()
    server = run_qkhyper(["serve", PROBE, "--port", str(port), "-w", "2"], project)
    server.wait_ready()
    assert len(server.pids("probe")) == 2
    assert get(f"http://127.0.0.1:{port}/scope").json()["root_path"] == ""  # at the root
    assert "bundled demo" not in server.output


def test_serve_module_app_that_does_not_import_is_one_line(project: Path) -> None:
    result = run_cli(["serve", "apps.nosuch:app", "--port", str(free_port())], project)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("qkhyper: error: app 'nosuch': ")
    assert "Traceback" not in result.stderr


# -- gunicorn's flags and WEB_CONCURRENCY --------------------------------------------------------------------


@pytest.mark.parametrize("command", ["serve", "gateway", "static"])
def test_short_flags(command: str) -> None:
    parsed = cli.parse([command, "-w", "3", "-c", "x.toml", "--graceful-timeout", "7.5"])
    assert (parsed.workers, parsed.config, parsed.graceful_timeout) == (3, "x.toml", 7.5)


def test_web_concurrency_is_below_the_flag_and_the_config(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(project, [{"name": "users", "app": PROBE}, {"name": "orders", "app": PROBE, "workers": 2}])
    settings = load_settings(str(config), env={"WEB_CONCURRENCY": "4"})
    assert [s.workers for s in settings.qkhyper.apps] == [4, 2]  # the config's key beats it, as in gunicorn
    assert [u.workers for u in make_plan(settings, Selection(workers=1)).units] == [1, 1]  # the flag beats both
    assert [s.workers for s in load_settings(str(config), env={}).qkhyper.apps] == [1, 2]
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    assert cli.workers(cli.parse(["gateway"])) == 4
    assert cli.workers(cli.parse(["static", "-w", "2"])) == 2
    assert cli.workers(cli.parse(["serve", "--aio"])) == 4
    assert cli.workers(cli.parse(["serve"])) is None  # each app's own, defaulted in the settings


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_web_concurrency(project: Path, value: str) -> None:
    config = write_config(project, [{"name": "users", "app": PROBE}])
    with pytest.raises(
        ConfigError, match=f"WEB_CONCURRENCY must be a whole number of workers, 1 or more, got '{value}'"
    ):
        load_settings(str(config), env={"WEB_CONCURRENCY": value})


def test_graceful_timeout_flag_overrides_the_key(project: Path) -> None:
    config = write_config(project, [{"name": "users", "app": PROBE}], top="graceful_timeout = 10")
    _, settings = settings_of(["serve", "--graceful-timeout", "2.5", "-c", str(config)])
    assert settings.graceful_timeout == 2.5 and make_plan(settings).graceful_timeout == 2.5
    _, settings = settings_of(["gateway", "-c", str(config)])
    assert settings.graceful_timeout == 10


def test_negative_graceful_timeout_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--graceful-timeout", "-1"]) == 2
    assert "argument --graceful-timeout: must be 0 or more seconds, got -1" in capsys.readouterr().err


# -- no config, qkhyper init ---------------------------------------------------------------------------------


def test_init_writes_a_config_that_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init"]) == 0
    path = tmp_path / "hypercorn.toml"
    assert capsys.readouterr().out.startswith(f"wrote {path}")
    assert api.check(load_settings(str(path)), io.StringIO()) == 0
    path.write_text("# mine\n")
    assert cli.main(["init"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"qkhyper: error: {path} exists; not overwriting it (--force replaces it)"
    ]
    assert path.read_text() == "# mine\n"
    assert cli.main(["init", "--force"]) == 0 and path.read_text().startswith("# hypercorn.toml")


def test_serve_without_a_config_says_it_serves_the_demo(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    server = run_qkhyper(["serve", "users", "--port", str(free_port())], project)
    server.wait_ready()
    start = server.output.split("ready:")[0]
    assert "qkhyper | no hypercorn.toml here: serving the bundled demo (users, orders); `qkhyper init`" in start


# -- output --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "usage"), [(["serve", "--bogus"], "serve"), (["static", "--nope", "1"], "static")])
def test_unknown_flags_show_the_subcommand_usage(
    args: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: qkhyper {usage} ")
    assert err.splitlines()[-1] == f"qkhyper {usage}: error: unrecognized arguments: {' '.join(args[1:])}"


def test_a_closed_stdout_ends_quietly(project: Path) -> None:
    """`qkhyper check | head -1`: the reader is gone before qkhyper writes; no BrokenPipeError traceback."""
    config = write_config(project, [{"name": "users", "app": PROBE}])
    proc = subprocess.Popen(
        [sys.executable, "-m", "qkhyper", "check", "-c", str(config)],
        cwd=project,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the interpreter has even started: every write meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(60) == 1
    assert err == b""
