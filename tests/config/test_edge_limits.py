"""The edge-limit settings: one flat key each under [qkhyper], checked, and carried to every worker."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from qkhyper.config import load_settings
from qkhyper.config.model import EdgeLimits
from qkhyper.errors import ConfigError
from qkhyper.gateway.routes import gateway_options
from qkhyper.supervisor.plan import EDGE_QUEUE, ChildSpec, builtin_plan, make_plan

APP = "[[qkhyper.apps]]\nname = 'users'\napp = 'svc.users:app'\nport = 9101\n"


def load(folder: Path, text: str, env: dict[str, str] | None = None, **overrides: object):
    path = folder / "hypercorn.toml"
    path.write_text(text + APP)
    return load_settings(str(path), env=env or {}, overrides=overrides)


def test_defaults(tmp_path: Path) -> None:
    limits = load(tmp_path, "").qkhyper.edge_limits()
    assert limits == EdgeLimits(max_header_size=65536, max_headers=100, header_timeout=10.0, h2c=False)


def test_file_environment_and_command_line(tmp_path: Path) -> None:
    text = "[qkhyper]\nmax_header_size = 8192\nmax_headers = 50\nheader_timeout = 3\nh2c = true\n"
    assert load(tmp_path, text).qkhyper.edge_limits() == EdgeLimits(8192, 50, 3.0, True)
    env = {
        "QKHYPER_MAX_HEADER_SIZE": "16384",
        "QKHYPER_MAX_HEADERS": "20",
        "QKHYPER_HEADER_TIMEOUT": "2.5",
        "QKHYPER_H2C": "false",
    }
    assert load(tmp_path, text, env).qkhyper.edge_limits() == EdgeLimits(16384, 20, 2.5, False)
    assert load(tmp_path, text, env, header_timeout=1.0).qkhyper.header_timeout == 1.0


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[qkhyper]\nmax_header_size = 0\n", {}, "qkhyper.max_header_size must be positive, got 0"),
        ("[qkhyper]\nmax_headers = -1\n", {}, "qkhyper.max_headers must be positive, got -1"),
        ("[qkhyper]\nheader_timeout = 0\n", {}, "qkhyper.header_timeout must be positive, got 0.0"),
        ("[qkhyper]\nheader_timeout = 'soon'\n", {}, "qkhyper.header_timeout must be a number, got 'soon'"),
        ("[qkhyper]\nmax_header_size = 1.5\n", {}, "qkhyper.max_header_size must be an integer, got 1.5"),
        ("[qkhyper]\nh2c = 1\n", {}, "qkhyper.h2c must be true or false, got 1"),
        ("[qkhyper]\nmax_header_sise = 1\n", {}, "unknown key 'max_header_sise' in [qkhyper] (did you mean"),
        ("", {"QKHYPER_HEADER_TIMEOUT": "soon"}, "QKHYPER_HEADER_TIMEOUT must be a number, got 'soon'"),
        ("", {"QKHYPER_MAX_HEADERS": "0"}, "qkhyper.max_headers must be positive, got 0"),
        ("[qkhyper]\nbackend = 'uvicorn'\nh2c = true\n", {}, 'qkhyper.h2c = true needs backend = "hypercorn"'),
        (
            "h11_max_incomplete_size = 100\n",
            {},
            "'h11_max_incomplete_size' is managed by qkhyper: set `max_header_size`",
        ),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_h2c_with_uvicorn_from_the_command_line_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="h2c"):
        load(tmp_path, "[qkhyper]\nh2c = true\n", backend="uvicorn")


def test_every_worker_is_told_the_limits(tmp_path: Path) -> None:
    settings = load(tmp_path, "[qkhyper]\nmax_headers = 7\nheader_timeout = 4\n")
    [unit] = make_plan(settings).units
    assert unit.child.limits == EdgeLimits(max_headers=7, header_timeout=4.0)
    assert ChildSpec.decode(unit.child.encode()) == unit.child
    assert dataclasses.is_dataclass(unit.child.limits)


@pytest.mark.parametrize(("in_file", "queue"), [(None, EDGE_QUEUE), (2, 2), (50, EDGE_QUEUE)])
def test_the_edge_servers_queue_few_messages_for_the_proxy(tmp_path: Path, in_file: int | None, queue: int) -> None:
    """A WebSocket whose upstream stopped reading holds at most EDGE_QUEUE + 1 client messages in the gateway."""
    top_level = "" if in_file is None else f"max_app_queue_size = {in_file}\n"
    settings = load(tmp_path, top_level + "[qkhyper.gateway]\nws_max_message_size = 1000\n")
    [unit] = builtin_plan(settings, "gateway", "x:y", gateway_options(settings), port=0, workers=1).units
    assert unit.child.hypercorn["max_app_queue_size"] == queue
    assert unit.child.hypercorn["websocket_max_message_size"] == 1000
    [app] = make_plan(settings).units
    assert app.child.hypercorn.get("max_app_queue_size") == in_file  # the apps get the file's own value
