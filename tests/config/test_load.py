"""The config loader: lookup order, precedence, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from qkhyper.config import load_settings
from qkhyper.config.load import DEMO_CONFIG
from qkhyper.errors import ConfigError, UsageError

APPS = """
[[qkhyper.apps]]
name = "users"
app = "svc.users:app"
port = 9101
"""


def write(folder: Path, text: str, name: str = "hypercorn.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def load(path: Path, env: dict[str, str] | None = None, **overrides: object):
    return load_settings(str(path), env=env or {}, overrides=overrides)


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(env={}).source == "bundled demo"
    local = write(tmp_path, APPS)
    assert load_settings(env={}).source == str(local)
    other = write(tmp_path, APPS.replace("users", "other"), "other.toml")
    assert load_settings(env={"QKHYPER_CONFIG": str(other)}).qkhyper.apps[0].name == "other"
    explicit = write(tmp_path, APPS.replace("users", "third"), "third.toml")
    chosen = load_settings(str(explicit), env={"QKHYPER_CONFIG": str(other)})
    assert chosen.qkhyper.apps[0].name == "third"


def test_bundled_demo_has_two_apps_and_resolves_from_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert [a.name for a in settings.qkhyper.apps] == ["users", "orders"]
    assert settings.base_dir == tmp_path
    assert DEMO_CONFIG.is_file()


def test_relative_paths_resolve_from_the_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "deploy"
    sub.mkdir()
    settings = load(write(sub, APPS))
    assert settings.base_dir == sub
    assert settings.port_map_path() == sub / ".qkhyper/ports.json"


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[qkhyper]\nbackend = "uvicorn"\nhost = "127.0.0.2"\n[qkhyper.gateway]\nport = 9000\n' + APPS
    )
    settings = load(path)
    assert (settings.qkhyper.backend, settings.qkhyper.gateway.port) == ("uvicorn", 9000)
    env = {"QKHYPER_BACKEND": "hypercorn", "QKHYPER_GATEWAY_PORT": "9100", "QKHYPER_HOST": "127.0.0.3"}
    settings = load(path, env)
    assert (settings.qkhyper.backend, settings.qkhyper.gateway.port) == ("hypercorn", 9100)
    settings = load(path, env, host="127.0.0.4")
    assert settings.qkhyper.host == "127.0.0.4"
    assert load(path).qkhyper.worker_class == "uvloop"  # the default


def test_env_lists_and_bools(tmp_path: Path) -> None:
    env = {"QKHYPER_FORWARDED_ALLOW_IPS": "10.0.0.1, 10.0.0.0/8", "QKHYPER_GATEWAY_ADD_SLASHES": "yes"}
    settings = load(write(tmp_path, APPS), env)
    assert settings.qkhyper.forwarded_allow_ips == ["10.0.0.1", "10.0.0.0/8"]
    assert settings.qkhyper.gateway.add_slashes is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "keep_alive_timout = 10\n",
            "unknown key 'keep_alive_timout' at the top level (not a Hypercorn setting) "
            "(did you mean 'keep_alive_timeout'?)",
        ),
        ("[qkhyper]\nbakend = 'uvicorn'\n", "unknown key 'bakend' in [qkhyper] (did you mean 'backend'?)"),
        (
            "[qkhyper.gateway]\nadd_slash = true\n",
            "unknown key 'add_slash' in [qkhyper.gateway] (did you mean 'add_slashes'?)",
        ),
        ("[qkhyper.statik]\nport = 1\n", "unknown key 'statik' in [qkhyper] (did you mean 'static'?)"),
        (
            "[[qkhyper.apps]]\nname='a'\napp='m:a'\nprot=1\n",
            "unknown key 'prot' in [qkhyper.apps[0]] (did you mean 'port'?)",
        ),
        ("graceful_timeout = 'ten'\n", "graceful_timeout must be a number, got 'ten'"),
        ("accesslog = true\n", "accesslog must be"),
        ("[qkhyper]\nhost = 1\n", "qkhyper.host must be a string, got 1"),
        ("[[qkhyper.apps]]\nname='a'\napp='m:a'\nport='80'\n", "qkhyper.apps[0].port must be an integer, got '80'"),
        (
            "[[qkhyper.apps]]\nname='a'\napp='m:a'\nworkers=true\n",
            "qkhyper.apps[0].workers must be an integer, got True",
        ),
        ("[qkhyper]\nbackend = 'gunicorn'\n", "qkhyper.backend must be one of hypercorn, uvicorn, got 'gunicorn'"),
        ("[qkhyper]\nworker_class = 'gevent'\n", "qkhyper.worker_class must be one of asyncio, uvloop, trio"),
        ("[qkhyper]\nlog_format = 'xml'\n", "qkhyper.log_format must be one of text, json, got 'xml'"),
        ("[[qkhyper.apps]]\nname='a'\n", "[qkhyper.apps[0]] is missing required key 'app'"),
        ("[[qkhyper.apps]]\nname='a'\napp='nocolon'\n", "must look like 'module:attribute'"),
        ("[[qkhyper.apps]]\nname='a'\napp='m:a'\nport=70000\n", "qkhyper.apps[0].port must be a port number"),
        ("[[qkhyper.apps]]\nname='a'\napp='m:a'\nprefix='../x'\n", "qkhyper.apps[0].prefix '../x' must be"),
        ("[[qkhyper.apps]]\nname='a b'\napp='m:a'\n", "qkhyper.apps[0].name 'a b' may only use"),
        ("bind = '0.0.0.0:80'\n", "'bind' is managed by qkhyper"),
        ("workers = 4\n", "'workers' is managed by qkhyper"),
        ("[qkhyper]\napps = 3\n", "qkhyper.apps must be an array of tables"),
        ("qkhyper = 3\n", "`qkhyper` must be a table"),
        ("not toml [\n", "not valid TOML"),
    ],
)
def test_config_mistakes_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("attr", ["name", "prefix", "port"])
def test_duplicates_are_errors(tmp_path: Path, attr: str) -> None:
    first = {"name": "a", "prefix": "p", "port": 9201}
    second = {"name": "b", "prefix": "q", "port": 9202, attr: first[attr]}
    text = ""
    for app in (first, second):
        text += (
            f"[[qkhyper.apps]]\nname = '{app['name']}'\napp = 'm:a'\nprefix = '{app['prefix']}'\nport = {app['port']}\n"
        )
    with pytest.raises(ConfigError, match=f"duplicate {attr}"):
        load(write(tmp_path, text))


def test_prefix_defaults_to_name_and_is_normalised(tmp_path: Path) -> None:
    text = "[[qkhyper.apps]]\nname='a'\napp='m:a'\n[[qkhyper.apps]]\nname='b'\napp='m:b'\nprefix='/api/v1/'\n"
    apps = load(write(tmp_path, text)).qkhyper.apps
    assert [a.prefix for a in apps] == ["a", "api/v1"]


def test_two_auto_ports_are_not_duplicates(tmp_path: Path) -> None:
    text = "[[qkhyper.apps]]\nname='a'\napp='m:a'\nport=0\n[[qkhyper.apps]]\nname='b'\napp='m:b'\n"
    assert len(load(write(tmp_path, text)).qkhyper.apps) == 2


def test_environment_mistakes(tmp_path: Path) -> None:
    path = write(tmp_path, APPS)
    with pytest.raises(ConfigError, match="unknown environment variable QKHYPER_BACKND .*QKHYPER_BACKEND"):
        load(path, {"QKHYPER_BACKND": "uvicorn"})
    with pytest.raises(ConfigError, match="QKHYPER_GATEWAY_PORT must be an integer, got 'x'"):
        load(path, {"QKHYPER_GATEWAY_PORT": "x"})


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="config file not found: .*nope.toml"):
        load_settings(str(tmp_path / "nope.toml"), env={})
    with pytest.raises(UsageError, match=r"\$QKHYPER_CONFIG"):
        load_settings(env={"QKHYPER_CONFIG": str(tmp_path / "gone.toml")})


def test_hypercorn_keys_pass_through(tmp_path: Path) -> None:
    settings = load(write(tmp_path, "graceful_timeout = 7\nkeep_alive_timeout = 2.5\naccesslog = '-'\n" + APPS))
    assert settings.hypercorn == {"graceful_timeout": 7, "keep_alive_timeout": 2.5, "accesslog": "-"}
    assert settings.graceful_timeout == 7.0


def test_proxy_settings_are_one_table_in_gateway_and_static(tmp_path: Path) -> None:
    text = APPS + "[qkhyper.gateway]\nupstream_idle_timeout = 5\n[qkhyper.static]\nread_timeout = 7\n"
    settings = load(write(tmp_path, text), env={"QKHYPER_STATIC_CLIENT_BODY_TIMEOUT": "9"})
    gateway, static = settings.qkhyper.gateway, settings.qkhyper.static
    assert (gateway.upstream_idle_timeout, gateway.read_timeout, gateway.ws_max_message_size) == (5.0, 60.0, 16 * 2**20)
    assert (static.read_timeout, static.client_body_timeout, static.sse_idle_timeout) == (7.0, 9.0, 0.0)


def test_request_id_is_on_by_default_and_set_per_table(tmp_path: Path) -> None:
    settings = load(write(tmp_path, APPS))
    assert settings.qkhyper.gateway.request_id is True and settings.qkhyper.static.request_id is True
    settings = load(write(tmp_path, APPS + "[qkhyper.gateway]\nrequest_id = false\n"))
    assert settings.qkhyper.gateway.request_id is False and settings.qkhyper.static.request_id is True
    settings = load(write(tmp_path, APPS), {"QKHYPER_STATIC_REQUEST_ID": "off", "QKHYPER_GATEWAY_REQUEST_ID": "no"})
    assert settings.qkhyper.gateway.request_id is False and settings.qkhyper.static.request_id is False
    with pytest.raises(ConfigError, match="QKHYPER_GATEWAY_REQUEST_ID must be true or false, got 'maybe'"):
        load(write(tmp_path, APPS), {"QKHYPER_GATEWAY_REQUEST_ID": "maybe"})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("request_id = 1", "qkhyper.gateway.request_id must be true or false, got 1"),
        ('request_id = "true"', "qkhyper.gateway.request_id must be true or false, got 'true'"),
        ("request_ids = true", "unknown key 'request_ids' in [qkhyper.gateway] (did you mean 'request_id'?)"),
        ("read_timeout = 0", "qkhyper.gateway.read_timeout must be positive, got 0"),
        ("connect_timeout = -1", "qkhyper.gateway.connect_timeout must be positive, got -1"),
        ("upstream_idle_timeout = -1", "qkhyper.gateway.upstream_idle_timeout must be 0 or more, got -1"),
        ("ws_max_message_size = 0", "qkhyper.gateway.ws_max_message_size must be positive, got 0"),
        ("pool_max_idle = -2", "qkhyper.gateway.pool_max_idle must be 0 or more, got -2"),
        ("read_timeout = nan", "qkhyper.gateway.read_timeout must be positive, got nan"),
        ("read_timeout = 'x'", "qkhyper.gateway.read_timeout must be a number, got 'x'"),
        ('fallback = "nohost"', "qkhyper.gateway.fallback: 'nohost' must look like HOST:PORT"),
        (
            'access_log_format = "apache"',
            "qkhyper.gateway.access_log_format must be one of combined, json, got 'apache'",
        ),
        (
            'upstream_parser = "llhttp"',
            "qkhyper.gateway.upstream_parser must be one of auto, httptools, h11, got 'llhttp'",
        ),
        ('upstreams = { "/b" = ["h:99999"] }', "upstreams '/b': 'h:99999': port 99999 is outside 1-65535"),
        ('upstreams = { "/b" = { targets = ["h:1"], sse_idle_timeout = -3 } }', "sse_idle_timeout must be 0 or more"),
        (
            'upstreams = { "/b" = { target = ["h:1"] } }',
            "unknown key 'target' in [qkhyper.gateway.upstreams./b] (did you mean 'targets'?)",
        ),
        ('upstreams = { "/../x" = ["h:1"] }', "must be one or more URL path segments"),
    ],
)
def test_proxy_setting_mistakes_name_the_key(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, APPS + "[qkhyper.gateway]\n" + line + "\n"))
    assert message in str(info.value)


def test_upstreams_take_a_list_or_a_table(tmp_path: Path) -> None:
    text = (
        APPS
        + '[qkhyper.gateway.upstreams]\n"/a" = ["h:1"]\n"/b" = { targets = ["h:2"], upstream_idle_timeout = 3 }\n"/users" = { sse_idle_timeout = 30 }\n'
    )
    upstreams = load(write(tmp_path, text)).qkhyper.gateway.upstreams
    assert upstreams["/a"].targets == ["h:1"] and upstreams["/a"].upstream_idle_timeout is None
    assert (upstreams["/b"].targets, upstreams["/b"].upstream_idle_timeout) == (["h:2"], 3.0)
    assert (upstreams["/users"].targets, upstreams["/users"].sse_idle_timeout) == ([], 30.0)


def test_log_settings_from_file_env_and_command_line(tmp_path: Path) -> None:
    path = write(
        tmp_path, "loglevel = 'info'\n[qkhyper]\nlog_format = 'json'\n[qkhyper.static]\naccess_log_format = 'json'\n"
    )
    settings = load(path)
    assert settings.qkhyper.log_format == "json" and settings.qkhyper.static.access_log_format == "json"
    assert settings.qkhyper.gateway.access_log_format == "combined"
    env = {"QKHYPER_LOG_FORMAT": "text", "QKHYPER_GATEWAY_ACCESS_LOG_FORMAT": "json"}
    from_env = load(path, env)
    assert from_env.qkhyper.log_format == "text" and from_env.qkhyper.gateway.access_log_format == "json"
    assert load(path, env, log_format="json").qkhyper.log_format == "json"
    # --log-level is the top-level key, checked as the file's value is.
    assert load_settings(str(path), env={}, top={"loglevel": "error"}).hypercorn["loglevel"] == "error"
    with pytest.raises(ConfigError, match="loglevel must be one of"):
        load_settings(str(path), env={}, top={"loglevel": "loud"})
    with pytest.raises(ConfigError, match="QKHYPER_GATEWAY_ACCESS_LOG_FORMAT|access_log_format must be one of"):
        load(path, {"QKHYPER_GATEWAY_ACCESS_LOG_FORMAT": "xml"})


def test_httptools_asked_for_but_missing_is_one_config_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "httptools" else real(name, *a))
    with pytest.raises(ConfigError, match=r"upstream_parser = 'httptools' needs httptools: pip install"):
        load(write(tmp_path, APPS + '[qkhyper.gateway]\nupstream_parser = "httptools"\n'))
