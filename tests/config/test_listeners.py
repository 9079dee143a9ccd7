"""Where servers listen and whom they believe: one clear error per mistake, at load time."""

from __future__ import annotations

from pathlib import Path

import pytest

from qkhyper.asgi.proxy_headers import TrustedPeers
from qkhyper.config import load_settings
from qkhyper.config.listeners import exposure_warnings, is_loopback
from qkhyper.config.targets import parse_http_url
from qkhyper.errors import ConfigError, UsageError

APP = "[[qkhyper.apps]]\nname = 'users'\napp = 'm:a'\n"


def load(tmp_path: Path, text: str):
    path = tmp_path / "hypercorn.toml"
    path.write_text(text)
    return load_settings(str(path), env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[qkhyper]\nforwarded_allow_ips = ['127.0.0.1', 'localhost']\n",
            'qkhyper.forwarded_allow_ips: \'localhost\' is not an IP address, a network like 10.0.0.0/8, "unix" or "*"',
        ),
        ("[qkhyper]\nforwarded_allow_ips = ['10.0.0.0/33']\n", "'10.0.0.0/33' is not an IP address"),
        ("[qkhyper]\nforwarded_allow_ips = ['']\n", "'' is not an IP address"),
        (
            "loglevel = 'verbose'\n",
            "loglevel must be one of critical, error, warning, warn, info, debug, got 'verbose'",
        ),
        ("root_path = 'api'\n", "root_path 'api' must look like /api"),
        ("root_path = '/api/'\n", "root_path '/api/' must look like /api"),
        ("root_path = '/a/../b'\n", "root_path '/a/../b' must look like /api"),
        (
            "certfile = 'c.pem'\n[qkhyper]\nbackend = 'uvicorn'\n",
            "'certfile' is managed by qkhyper: set `certfile` in [qkhyper] (the apps), [qkhyper.gateway] or [qkhyper.static]",
        ),
        ("umask = 7\n", "'umask' is managed by qkhyper: set `socket_mode`"),
        ("user = 0\n", "'user' is managed by qkhyper: set `socket_owner`"),
        ("group = 0\n", "'group' is managed by qkhyper: set `socket_group`"),
        (APP + "bind = '/tmp/x.sock'\n", "qkhyper.apps[0].bind '/tmp/x.sock' must look like unix:/path/to.sock"),
        (APP + "bind = 'unix:'\n", "qkhyper.apps[0].bind 'unix:' must look like unix:/path/to.sock"),
        (APP + "bind = '127.0.0.1:80'\n", "(TCP: set host and port)"),
        (APP + f"bind = 'unix:/{'x' * 120}'\n", "the path must be 1-107 bytes without NUL"),
        (APP + "bind = 'unix:/tmp/x.sock'\nport = 8001\n", "qkhyper.apps[0]: set bind or port, not both"),
        (
            APP + "bind = 'unix:/tmp/x.sock'\nsocket_mode = 660\n",
            "qkhyper.apps[0].socket_mode must be a mode 0o000-0o777, got 660 (= 0o1224); write it in octal, e.g. 0o660",
        ),
        (APP + "bind = 'unix:/tmp/x.sock'\nsocket_mode = -1\n", "socket_mode must be a mode 0o000-0o777, got -1"),
        (APP + "bind = 'unix:/tmp/x.sock'\nsocket_mode = '660'\n", "qkhyper.apps[0].socket_mode must be an integer"),
        (
            APP + "bind = 'unix:/tmp/x.sock'\nsocket_owner = 'no-such-user-qk'\n",
            "socket_owner: no user 'no-such-user-qk'",
        ),
        (APP + "bind = 'unix:/tmp/x.sock'\nsocket_group = 'no-such-group-qk'\n", "no group 'no-such-group-qk'"),
        (APP + "socket_mode = 0o660\n", 'qkhyper.apps[0].socket_mode needs bind = "unix:/path/to.sock"'),
        (APP + "socket_group = 'nogroup'\n", "qkhyper.apps[0].socket_group needs bind"),
        (
            APP + "bind = 'unix:/tmp/x.sock'\n" + APP.replace("users", "orders") + "bind = 'unix:/tmp/x.sock'\n",
            "duplicate bind 'unix:/tmp/x.sock': apps 'users' and 'orders'",
        ),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_good_listeners_and_trust_lists_load(tmp_path: Path) -> None:
    text = (
        "loglevel = 'WARN'\nroot_path = '/api/v1'\n[qkhyper]\nforwarded_allow_ips = ['10.0.0.0/8', '::1', 'unix', '*']\n"
        + APP
        + "bind = 'unix:/tmp/qk-users.sock'\nsocket_mode = 0o660\nsocket_owner = '0'\nsocket_group = 'nogroup'\n"
    )
    settings = load(tmp_path, text)
    spec = settings.qkhyper.apps[0]
    assert (spec.bind, spec.socket_mode, spec.socket_owner, spec.socket_group) == (
        "unix:/tmp/qk-users.sock",
        0o660,
        "0",
        "nogroup",
    )


def test_the_default_trust_list_is_this_machine(tmp_path: Path) -> None:
    assert load(tmp_path, APP).qkhyper.forwarded_allow_ips == ["127.0.0.1", "::1", "unix"]


@pytest.mark.parametrize(
    ("entries", "peer", "believed"),
    [
        (["127.0.0.1", "::1", "unix"], None, True),  # a unix-socket peer: scope["client"] is None
        (["127.0.0.1", "::1"], None, False),
        (["*"], None, True),
        (["unix"], "127.0.0.1", False),
        (["10.0.0.0/8"], "10.1.2.3", True),
    ],
)
def test_trusted_peers(entries: list[str], peer: str | None, believed: bool) -> None:
    assert (peer in TrustedPeers(entries)) is believed


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.1.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("host", "trusted", "proxy_headers", "expected"),
    [
        ("127.0.0.1", ["127.0.0.1"], True, []),
        ("0.0.0.0", ["127.0.0.1"], True, ["listening on 0.0.0.0, beyond this machine"]),
        ("127.0.0.1", ["*"], True, ['forwarded_allow_ips = ["*"]']),
        ("127.0.0.1", ["*"], False, []),  # the gateway and static do not read X-Forwarded-*
        ("::", ["10.0.0.0/8", "*"], True, ["listening on ::", 'forwarded_allow_ips = ["*"]']),
    ],
)
def test_exposure_warnings(host: str, trusted: list[str], proxy_headers: bool, expected: list[str]) -> None:
    lines = exposure_warnings(host, trusted, proxy_headers=proxy_headers)
    assert len(lines) == len(expected)
    assert all(line.startswith(start) for line, start in zip(lines, expected, strict=True))


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("http://api.internal", ("api.internal", 80)),
        ("http://h:0", None),  # `port or 80` made an explicit :0 into 80
        ("http://h:70000", None),
        ("http://h:-1", None),
        ("https://h:8443", ("h", 8443)),
        ("https://h", ("h", 443)),
        ("ftp://h", None),
        ("h:80", None),
    ],
)
def test_api_target_ports(url: str, address: tuple[str, int] | None) -> None:
    if address is None:
        with pytest.raises(UsageError, match=f"^--api-target: {url!r}"):
            parse_http_url(url, "--api-target")
    else:
        assert parse_http_url(url, "--api-target") == address
