"""`log_format = "json"`: the pure pieces, table-tested (merging a worker's line, a record's fields)."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from qkhyper.jsonlog import (
    JsonFormatter,
    JsonWriter,
    dumps,
    guess_level,
    iso_time,
    json_log_config,
    merge_line,
    plain_fields,
)
from qkhyper.logs import LabelHandler, LabelWriter, make_writer

NOW = 1_795_776_060.5  # 2026-11-27T10:41:00.500Z
TS = "2026-11-27T10:41:00.500Z"


def test_iso_time_is_utc_with_milliseconds() -> None:
    assert iso_time(NOW) == TS
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("[2026-11-27 10:41:00 +0000] [12] [INFO] Running on http://127.0.0.1:8001", "info"),  # Hypercorn
        ("[2026-11-27 10:41:00 +0000] [12] [ERROR] Exception in ASGI application", "error"),
        ("WARNING:  Invalid HTTP request received.", "warning"),  # uvicorn
        ("ERROR:    Traceback follows", "error"),
        ("WARNING:root:something", "warning"),  # logging.basicConfig
        ("[WARNING] warning: hypercorn internals changed", "warning"),  # a text-mode qkhyper child
        ("[WARN] short", "warning"),
        ("FATAL: gone", "critical"),
        ("CRITICAL disk full", "critical"),
        ("Information about ERROR handling", "info"),  # a word that only starts like a level
        ("an ERROR in the middle", "info"),
        ("error: lower case is not a server's format", "info"),
        ("", "info"),
    ],
)
def test_guess_level(text: str, level: str) -> None:
    assert guess_level(text) == level


BASE = {"ts": TS, "level": "info", "app": "users", "pid": 7}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Plain text becomes msg, with the supervisor's keys.
        ("hello", {**BASE, "msg": "hello"}),
        ("ERROR:    it broke", {**BASE, "level": "error", "msg": "ERROR:    it broke"}),
        # JSON that is not an object, broken JSON, a line cut at 64 KiB: text.
        ("[1, 2]", {**BASE, "msg": "[1, 2]"}),
        ('"a string"', {**BASE, "msg": '"a string"'}),
        ('{"msg": "cut', {**BASE, "msg": '{"msg": "cut'}),
        # An object is merged: its own keys kept, the base keys first.
        ('{"msg": "hi", "user": 3}', {**BASE, "msg": "hi", "user": 3}),
        ('  {"msg": "padded"}  ', {**BASE, "msg": "padded"}),
        # The app's ts, level and pid win where it set them...
        (
            '{"ts": "2026-01-01T00:00:00Z", "level": "debug", "pid": 99, "msg": "x"}',
            {**BASE, "ts": "2026-01-01T00:00:00Z", "level": "debug", "pid": 99, "msg": "x"},
        ),
        # ...its app never does: a different one is kept as app_own; the same one is just the label.
        ('{"app": "billing", "msg": "x"}', {**BASE, "msg": "x", "app_own": "billing"}),
        ('{"app": "users", "msg": "x"}', {**BASE, "msg": "x"}),
        # No msg: python-json-logger's message, structlog's event; else empty.
        ('{"message": "from pjl"}', {**BASE, "msg": "from pjl", "message": "from pjl"}),
        ('{"event": "from structlog"}', {**BASE, "msg": "from structlog", "event": "from structlog"}),
        ('{"message": 5, "event": "e"}', {**BASE, "msg": "e", "message": 5, "event": "e"}),
        ('{"user": 3}', {**BASE, "msg": "", "user": 3}),
        ("{}", {**BASE, "msg": ""}),
    ],
)
def test_merge_line(text: str, expected: dict[str, Any]) -> None:
    merged = merge_line(text, "users", 7, NOW)
    assert merged == expected
    assert list(merged)[:5] == ["ts", "level", "app", "pid", "msg"]


def test_dumps_is_one_ascii_line_whatever_the_app_wrote() -> None:
    merged = merge_line('{"msg": "a\\nb \\ud800 é"}', "users", 7, NOW)
    line = dumps({**merged, "where": Path("/srv/app")})  # not JSON: its str()
    assert "\n" not in line and line.isascii()
    assert json.loads(line)["msg"] == "a\nb \ud800 é" and json.loads(line)["where"] == "/srv/app"


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("qkhyper.supervisor", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    record.created = NOW
    return record


def test_formatter_writes_base_keys_logger_and_extra_fields() -> None:
    line = JsonFormatter("gateway").format(_record("worker %d %s", 12, "exited", exit_code=3, worker_pid=12))
    assert json.loads(line) == {
        "ts": TS,
        "level": "warning",
        "app": "gateway",
        "pid": _record("x").process,
        "msg": "worker 12 exited",
        "logger": "qkhyper.supervisor",
        "exit_code": 3,
        "worker_pid": 12,
    }


def test_formatter_extra_fields_never_replace_the_base_keys() -> None:
    fields = json.loads(JsonFormatter("gateway").format(_record("m", app="evil", msg2="ok")))
    assert fields["app"] == "gateway" and fields["msg2"] == "ok"


def test_formatter_keeps_the_traceback_in_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("qkhyper", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = JsonFormatter("users").format(record)
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["msg"] == "failed" and "ValueError: boom" in fields["exc"] and "Traceback" in fields["exc"]


def test_json_log_config_makes_every_formatter_json_and_copies() -> None:
    original = {
        "version": 1,
        "formatters": {"default": {"fmt": "%(message)s"}, "access": {"fmt": "x"}},
        "handlers": {"default": {"formatter": "default", "class": "logging.StreamHandler"}},
    }
    config = json_log_config(original, "users")
    assert config["formatters"] == {
        "default": {"()": "qkhyper.jsonlog.JsonFormatter", "app": "users"},
        "access": {"()": "qkhyper.jsonlog.JsonFormatter", "app": "users"},
    }
    assert config["handlers"] == original["handlers"] and config["handlers"] is not original["handlers"]
    assert original["formatters"]["default"] == {"fmt": "%(message)s"}


def test_json_writer_lines_relays_and_records() -> None:
    stream = io.StringIO()
    writer = JsonWriter(stream, clock=lambda: NOW)
    writer.line("qkhyper", "app  url")
    writer.relay("users", 41, '{"msg": "own", "level": "error"}')
    writer.relay("users", 41, "plain")
    LabelHandler(writer).handle(_record("ready: %d app(s)", 1, exit_code=0))
    objects = [json.loads(line) for line in stream.getvalue().splitlines()]
    pid = _record("x").process
    assert objects == [
        plain_fields("app  url", "qkhyper", pid, NOW),
        {**BASE, "app": "users", "pid": 41, "level": "error", "msg": "own"},
        {**BASE, "app": "users", "pid": 41, "msg": "plain"},
        {
            **plain_fields("ready: 1 app(s)", "qkhyper", pid, NOW, "warning"),
            "logger": "qkhyper.supervisor",
            "exit_code": 0,
        },
    ]


def test_text_writer_is_unchanged_by_the_json_mode() -> None:
    stream = io.StringIO()
    writer = make_writer("text", stream, ["users"])
    assert isinstance(writer, LabelWriter)
    writer.relay("users", 41, '{"msg": "own"}')
    LabelHandler(writer).handle(_record("two\nlines"))
    assert stream.getvalue() == 'users   | {"msg": "own"}\nqkhyper | two\nqkhyper | lines\n'
    assert isinstance(make_writer("json", stream, ["users"]), JsonWriter)
