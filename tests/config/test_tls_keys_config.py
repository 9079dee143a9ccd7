"""TLS keys per server: every mistake is one line naming the key (exit 2), found before anything runs."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from qkhyper.advice import static_warnings
from qkhyper.api import server_url, tls_lines
from qkhyper.config import load_settings
from qkhyper.config.model import Settings
from qkhyper.errors import ConfigError
from qkhyper.gateway.routes import gateway_options
from qkhyper.supervisor.plan import builtin_plan, make_plan
from qkhyper.tls import PASSWORD_VAR, ServerTls
from tests.certs import PASSWORD, Certs, make_certs
from tests.conftest import run_cli, write_config

APP = '\n[[qkhyper.apps]]\nname = "users"\napp = "apps.probe:app"\nport = 9101\n'


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    made = make_certs(tmp_path)
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    (tmp_path / "adir").mkdir()
    return made


def load(folder: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    path = folder / "hypercorn.toml"
    path.write_text(text + APP)
    return load_settings(str(path), env=env or {})


def table(name: str, **keys: str) -> str:
    header = "[qkhyper]" if name == "qkhyper" else f"[qkhyper.{name}]"
    return "\n".join([header, *(f'{key} = "{value}"' for key, value in keys.items())]) + "\n"


GOOD = {"certfile": "server.pem", "keyfile": "server.key"}

# (table, keys, message): {d} is the folder the files are in.
MISTAKES: list[tuple[str, dict[str, str], str]] = [
    ("qkhyper", {"certfile": "server.pem"}, "qkhyper.certfile is set without qkhyper.keyfile: set both (PEM files)"),
    (
        "gateway",
        {"keyfile": "server.key"},
        "qkhyper.gateway.keyfile is set without qkhyper.gateway.certfile: set both (PEM files)",
    ),
    (
        "static",
        {"ca_certs": "ca.pem"},
        "qkhyper.static.ca_certs needs qkhyper.static.certfile and qkhyper.static.keyfile",
    ),
    (
        "qkhyper",
        {"keyfile_password": "x"},
        "qkhyper.keyfile_password needs qkhyper.certfile and qkhyper.keyfile",
    ),
    (
        "gateway",
        {**GOOD, "certfile": "nope.pem"},
        "qkhyper.gateway.certfile: cannot read {d}/nope.pem: No such file or directory",
    ),
    ("static", {**GOOD, "keyfile": "adir"}, "qkhyper.static.keyfile: cannot read {d}/adir: Is a directory"),
    (
        "qkhyper",
        {**GOOD, "ca_certs": "missing-ca.pem"},
        "qkhyper.ca_certs: cannot read {d}/missing-ca.pem: No such file or directory",
    ),
    ("gateway", {**GOOD, "certfile": "junk.pem"}, "qkhyper.gateway.certfile: {d}/junk.pem holds no PEM certificate"),
    ("gateway", {**GOOD, "keyfile": "junk.pem"}, "qkhyper.gateway.keyfile: {d}/junk.pem holds no PEM private key"),
    (
        "gateway",
        {**GOOD, "keyfile": "other.key"},
        "qkhyper.gateway.keyfile {d}/other.key is not the key of qkhyper.gateway.certfile {d}/server.pem",
    ),
    (
        "qkhyper",
        {**GOOD, "keyfile": "server-encrypted.key"},
        "qkhyper.keyfile {d}/server-encrypted.key is encrypted: set qkhyper.keyfile_password",
    ),
    (
        "static",
        {**GOOD, "keyfile": "server-encrypted.key", "keyfile_password": "wrong"},
        "qkhyper.static.keyfile_password does not decrypt qkhyper.static.keyfile {d}/server-encrypted.key",
    ),
    ("qkhyper", {**GOOD, "ca_certs": "junk.pem"}, "qkhyper.ca_certs: {d}/junk.pem holds no PEM certificate"),
]


@pytest.mark.parametrize(("name", "keys", "message"), MISTAKES)
def test_every_tls_mistake_is_one_line_naming_the_key(
    certs: Certs, name: str, keys: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        tls_lines(load(certs.folder, table(name, **keys)))
    assert str(info.value) == message.format(d=certs.folder)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'certfile = "server.pem"\n',
            "'certfile' is managed by qkhyper: set `certfile` in [qkhyper] (the apps), [qkhyper.gateway] or "
            "[qkhyper.static]",
        ),
        ('keyfile = "server.key"\n', "'keyfile' is managed by qkhyper: set `keyfile` in [qkhyper] (the apps)"),
        ('ca_certs = "ca.pem"\n', "'ca_certs' is managed by qkhyper: set `ca_certs` in [qkhyper] (the apps)"),
        ("verify_mode = 2\n", "'verify_mode' is managed by qkhyper: set `ca_certs` in [qkhyper]"),
        ("[qkhyper.gateway]\ncertfile = 1\n", "qkhyper.gateway.certfile must be a string, got 1"),
        ('[qkhyper]\ncertfiel = "x"\n', "unknown key 'certfiel' in [qkhyper] (did you mean 'certfile'?)"),
    ],
)
def test_top_level_tls_keys_and_types(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert message in str(info.value)


def test_encrypted_key_with_its_password_loads_and_paths_resolve_from_the_config(certs: Certs) -> None:
    keys = {**GOOD, "keyfile": "server-encrypted.key", "keyfile_password": PASSWORD, "ca_certs": "ca.pem"}
    lines = tls_lines(load(certs.folder, table("gateway", **keys)))
    assert lines == [
        "apps:    http://127.0.0.1 (plain HTTP)",
        f"gateway: https://127.0.0.1:8000 (TLS, certfile {certs.cert}, client certificates required "
        f"(ca_certs {certs.ca_pem}))",
        "static:  http://127.0.0.1:8080 (plain HTTP)",
    ]


def test_environment_sets_and_overrides_the_tls_keys(certs: Certs) -> None:
    env = {
        "QKHYPER_GATEWAY_CERTFILE": "server.pem",
        "QKHYPER_GATEWAY_KEYFILE": "server-encrypted.key",
        "QKHYPER_GATEWAY_KEYFILE_PASSWORD": PASSWORD,
        "QKHYPER_STATIC_KEYFILE": "server.key",  # over the file's mismatched key
    }
    text = table("static", certfile="server.pem", keyfile="other.key")
    settings = load(certs.folder, text, env)
    gateway, static = settings.qkhyper.gateway, settings.qkhyper.static
    assert (gateway.certfile, gateway.keyfile_password, static.keyfile) == ("server.pem", PASSWORD, "server.key")
    assert tls_lines(settings)[1].startswith("gateway: https://")
    assert tls_lines(settings)[2].startswith("static:  https://")


def test_the_password_reaches_the_worker_by_environment_never_argv(certs: Certs) -> None:
    keys = {**GOOD, "keyfile": "server-encrypted.key", "keyfile_password": PASSWORD}
    settings = load(certs.folder, table("qkhyper", **keys))
    (unit,) = make_plan(settings).units
    assert unit.child.tls is not None and unit.child.tls.certfile == str(certs.cert)
    assert unit.child.tls.password == ""
    assert PASSWORD.encode() not in base64.b64decode(unit.child.encode())
    assert unit.env[PASSWORD_VAR] == PASSWORD
    assert PASSWORD not in repr(settings)  # nor in a traceback's locals


def test_builtin_servers_take_their_own_table(certs: Certs) -> None:
    settings = load(certs.folder, table("gateway", **GOOD))
    options = gateway_options(settings)
    gateway = builtin_plan(settings, "gateway", "x:y", options, port=0, workers=1).units[0]
    assert gateway.child.tls is not None and gateway.child.tls.keyfile == str(certs.key)
    assert make_plan(settings).units[0].child.tls is None  # the apps stay on plain HTTP


def test_the_gateway_routes_to_apps_that_speak_tls_over_https(certs: Certs) -> None:
    """The app's own certificate is what the gateway trusts, and the client's Host is kept (apps build URLs from it)."""
    (route,) = gateway_options(load(certs.folder, table("qkhyper", **GOOD))).routes
    assert route.tls and route.tls_options.ca_certs == str(certs.cert) and route.tls_options.verify
    assert route.sends_target_host is False


def test_the_gateway_refuses_apps_that_want_a_client_certificate(certs: Certs) -> None:
    settings = load(certs.folder, table("qkhyper", **GOOD, ca_certs="ca.pem"))
    with pytest.raises(ConfigError) as info:
        gateway_options(settings)
    assert str(info.value) == (
        "app users asks clients for a certificate ([qkhyper] ca_certs), and the gateway has none to present: "
        "end TLS at the gateway ([qkhyper.gateway] certfile) and keep the apps on loopback HTTP"
    )


@pytest.mark.parametrize("command", ["check", "serve", "gateway", "static"])
def test_command_line_exit_2_with_one_line(project: Path, command: str) -> None:
    make_certs(project)
    config = write_config(project, [{"name": "users", "app": "apps.probe:app"}])
    (project / "static").mkdir()
    config.write_text(
        config.read_text()
        + '\n[qkhyper.gateway]\ncertfile = "server.pem"\nkeyfile = "other.key"\n'
        + '[qkhyper.static]\ncertfile = "server.pem"\nkeyfile = "other.key"\n'
        + 'root = "static"\n'
    )
    if command == "serve":
        config.write_text(
            config.read_text().replace("[qkhyper]\n", '[qkhyper]\ncertfile = "server.pem"\nkeyfile = "other.key"\n', 1)
        )
    result = run_cli([command, "--config", str(config)], project, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    where = {"serve": "qkhyper", "static": "qkhyper.static"}.get(command, "qkhyper.gateway")
    assert result.stderr.strip().splitlines() == [
        f"qkhyper: error: {where}.keyfile {project}/other.key is not the key of {where}.certfile {project}/server.pem"
    ]
    assert "ready:" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "warned"),
    [
        (table("gateway", **GOOD), True),  # the default api_target is the gateway's port
        (table("gateway", **GOOD) + table("static", api_target="http://localhost:8000"), True),
        (table("gateway", **GOOD) + table("static", api_target="http://127.0.0.1:9000"), False),
        (table("gateway", **GOOD) + table("static", api_target="https://localhost:8000"), False),  # https: fine
        (table("static", **GOOD), False),  # static's own TLS is towards the browser
    ],
)
def test_static_is_warned_when_its_api_target_is_the_tls_gateway(certs: Certs, text: str, warned: bool) -> None:
    lines = static_warnings(load(certs.folder, text))
    assert len(lines) == warned
    if warned:
        assert "which serves TLS, and static proxies /api over plain HTTP: those requests will fail" in lines[0]


@pytest.mark.parametrize(
    ("host", "port", "tls", "url"),
    [
        ("127.0.0.1", 8443, True, "https://127.0.0.1:8443"),
        ("::1", 8000, False, "http://[::1]:8000"),
        ("::1", None, True, "https://[::1]"),
        ("0.0.0.0", 0, True, "https://0.0.0.0:(free port)"),
    ],
)
def test_server_urls_as_printed(host: str, port: int | None, tls: bool, url: str) -> None:
    assert server_url(host, port, ServerTls("c", "k") if tls else None) == url


def test_empty_environment_values_turn_a_tables_tls_off(certs: Certs) -> None:
    """README: a second, plain gateway for static's API from the same config."""
    settings = load(
        certs.folder, table("gateway", **GOOD), {"QKHYPER_GATEWAY_CERTFILE": "", "QKHYPER_GATEWAY_KEYFILE": ""}
    )
    assert tls_lines(settings)[1] == "gateway: http://127.0.0.1:8000 (plain HTTP)"
