"""Every Hypercorn key qkhyper hands to uvicorn means there what it means to Hypercorn.

Each row sets one top-level key (or leaves it out) and compares what
Hypercorn's own `Config` makes of it with what the uvicorn `Config` built by
`serverkeys.uvicorn_kwargs` makes of it, read back the way each server uses
it (its logger, its listen backlog, its timeouts).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from hypercorn.config import Config

from qkhyper.backends.serverkeys import CARRIED, hypercorn_mapping, ignored_by_uvicorn, uvicorn_kwargs

ABSENT = object()


async def app(scope: Any, receive: Any, send: Any) -> None:  # never called
    raise AssertionError


def _target(logger: logging.Logger | None) -> object:
    """Where a server's logger writes: None (off), "stdout", "stderr" or a file name."""
    if logger is None or not logger.handlers:
        return None
    handler = logger.handlers[0]
    if isinstance(handler, logging.FileHandler):
        return Path(handler.baseFilename).name
    stream = getattr(handler, "stream", None)
    return {sys.stdout: "stdout", sys.stderr: "stderr"}.get(stream, stream)


def hypercorn_reads(key: str, hc: dict[str, Any]) -> object:
    config = Config.from_mapping(hypercorn_mapping(hc))
    if key == "accesslog":
        return _target(config.log.access_logger)
    if key == "loglevel":
        assert config.log.error_logger is not None
        return config.log.error_logger.level
    return getattr(config, key)


_UVICORN_ATTRS = {
    "graceful_timeout": "timeout_graceful_shutdown",
    "keep_alive_timeout": "timeout_keep_alive",
    "include_server_header": "server_header",
    "include_date_header": "date_header",
    "backlog": "backlog",
    "websocket_max_message_size": "ws_max_size",
    "ciphers": "ssl_ciphers",
    "max_app_queue_size": "ws_max_queue",
}


def uvicorn_reads(key: str, hc: dict[str, Any]) -> object:
    config = uvicorn.Config(app, **uvicorn_kwargs(hc))  # configures uvicorn's loggers, as a worker's does
    if key == "accesslog":
        return _target(logging.getLogger("uvicorn.access")) if config.access_log else None
    if key == "loglevel":
        return logging.getLogger("uvicorn.error").level
    return getattr(config, _UVICORN_ATTRS[key])


ROWS: list[tuple[str, object]] = [
    ("graceful_timeout", ABSENT),
    ("graceful_timeout", 7),
    ("graceful_timeout", 0.5),
    ("keep_alive_timeout", ABSENT),
    ("keep_alive_timeout", 2.5),  # int() made it 2 on uvicorn
    ("keep_alive_timeout", 0.5),  # ... and this 0
    ("accesslog", ABSENT),
    ("accesslog", ""),  # off for Hypercorn; uvicorn's access log was on (half the req/s)
    ("accesslog", "-"),
    ("accesslog", "access.log"),  # a file: uvicorn wrote to stdout instead
    ("loglevel", ABSENT),
    ("loglevel", "warning"),
    ("loglevel", "WARN"),  # uvicorn's own names lack it
    ("loglevel", "DEBUG"),
    ("loglevel", "error"),
    ("include_server_header", ABSENT),
    ("include_server_header", False),
    ("include_date_header", ABSENT),
    ("include_date_header", False),
    ("backlog", ABSENT),  # Hypercorn alone listens with 100, uvicorn with 2048
    ("backlog", 64),
    ("websocket_max_message_size", ABSENT),
    ("websocket_max_message_size", 1000),
    ("max_app_queue_size", ABSENT),  # uvicorn's own default was 32
    ("max_app_queue_size", 2),
    ("ciphers", ABSENT),  # uvicorn's own default was "TLSv1"
    ("ciphers", "ECDHE+CHACHA20"),
]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Relative log files land in tmp_path; the loggers both servers configured are reset after."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in ("hypercorn.access", "hypercorn.error", "uvicorn", "uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            handler.close()
        logger.handlers = []


@pytest.mark.parametrize(("key", "value"), ROWS, ids=[f"{k}={v!r}" if v is not ABSENT else k for k, v in ROWS])
def test_key_means_the_same_on_both_backends(in_tmp: Path, key: str, value: object) -> None:
    hc = {} if value is ABSENT else {key: value}
    assert uvicorn_reads(key, hc) == hypercorn_reads(key, hc)


def test_every_carried_key_has_rows() -> None:
    assert {key for key, _ in ROWS} == set(CARRIED)
    assert {key for key, value in ROWS if value is ABSENT} == set(CARRIED)  # the defaults agree too


def test_root_path_goes_to_neither_server() -> None:
    assert "root_path" not in hypercorn_mapping({"root_path": "/api"})
    assert "root_path" not in uvicorn_kwargs({"root_path": "/api"})


@pytest.mark.parametrize(
    ("hc", "ignored"),
    [
        ({"graceful_timeout": 3, "accesslog": "-", "root_path": "/a"}, []),
        ({"errorlog": "-", "server_names": ["a"], "backlog": 5}, ["errorlog", "server_names"]),
        ({"access_log_format": "%(h)s"}, ["access_log_format"]),
    ],
)
def test_keys_uvicorn_has_no_twin_for(hc: dict[str, Any], ignored: list[str]) -> None:
    assert ignored_by_uvicorn(hc) == ignored
