"""`log_format = "json"`: every line qkhyper writes is one JSON object.

Each object starts with `ts` (ISO 8601, UTC, milliseconds), `level`, `app`
(the label: an app's name, `qkhyper` for the supervisor, `gateway`, `static`),
`pid` and `msg`; structured fields a log call attaches (`extra=`) follow.

A worker's output line that is itself a JSON object is merged into the
supervisor's object instead of being wrapped (`merge_line`), so an app that
logs JSON (structlog, python-json-logger) keeps its own fields. Who wins:

- `app` is always the supervisor's label: it is the one fact a log pipeline
  routes on, and an app must not be able to speak for another. An app's own,
  different `app` value is kept as `app_own`.
- `ts`, `level`, `pid` and `msg` are the app's where it set them (it knows best
  when and how bad; a subprocess of the worker has its own pid), the
  supervisor's where it did not. Without `msg`, a `message` or `event` string
  (python-json-logger, structlog) is copied into it.

Everything here but the writer is a pure function of its inputs, so the
merging rules are table-tested (tests/test_jsonlog.py).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

# The keys every object starts with, in this order.
BASE_KEYS = ("ts", "level", "app", "pid", "msg")
# Attributes every LogRecord has; anything else on a record came from `extra=`. Except
# uvicorn's `color_message`: the message again, with terminal colour codes.
_RECORD_KEYS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}
# Level words the servers and Python's logging put near the start of a plain line:
# Hypercorn `[date] [pid] [INFO] ...`, uvicorn `INFO:     ...`, logging's `WARNING:root:...`.
_LEVEL_WORD = re.compile(r"^(?:\[[^\]]*\] )*\[?(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\]?[:\s]")
_LEVEL_NAMES = {"WARN": "warning", "FATAL": "critical"}


def iso_time(epoch: float) -> str:
    """`2026-11-27T10:41:00.123Z`: sortable as text, and what log stores parse without a format."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(fields: Mapping[str, Any]) -> str:
    """One ASCII line, whatever an app wrote (newlines, a lone surrogate); a value JSON cannot hold is its str()."""
    return json.dumps(fields, separators=(",", ":"), default=str)


def guess_level(text: str) -> str:
    """The level a plain line names near its start (a server's own format), else info.

    Workers' stdout and stderr share one pipe, so the stream cannot tell.
    """
    match = _LEVEL_WORD.match(text[:200])
    if match is None:
        return "info"
    word = match.group(1)
    return _LEVEL_NAMES.get(word, word.lower())


def plain_fields(text: str, app: str, pid: int, now: float, level: str = "info") -> dict[str, Any]:
    return {"ts": iso_time(now), "level": level, "app": app, "pid": pid, "msg": text}


def merge_line(text: str, app: str, pid: int, now: float) -> dict[str, Any]:
    """A worker's output line as one object: merged if it is a JSON object, else its text as `msg`."""
    own = _json_object(text)
    if own is None:
        return plain_fields(text, app, pid, now, guess_level(text))
    if "msg" not in own:
        for key in ("message", "event"):
            if isinstance(own.get(key), str):
                own["msg"] = own[key]
                break
    if "app" in own and own["app"] != app:
        own["app_own"] = own["app"]
    own["app"] = app
    merged = {**plain_fields("", app, pid, now), **own}
    return {**{key: merged[key] for key in BASE_KEYS}, **merged}


def _json_object(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if not stripped.startswith("{"):  # most lines: no parse attempted
        return None
    try:
        value = json.loads(stripped)
    except ValueError:  # also a line cut at the relay's 64 KiB limit
        return None
    return value if isinstance(value, dict) else None


def record_fields(record: logging.LogRecord, app: str, exception: Callable[[Any], str]) -> dict[str, Any]:
    """A log record as one object: the base keys, its logger, its `extra=` fields, any traceback."""
    fields: dict[str, Any] = {
        "ts": iso_time(record.created),
        "level": record.levelname.lower(),
        "app": app,
        "pid": record.process or os.getpid(),
        "msg": record.getMessage(),
        "logger": record.name,
    }
    for key, value in vars(record).items():
        if key not in _RECORD_KEYS and key not in fields:
            fields[key] = value
    if record.exc_info:
        fields["exc"] = exception(record.exc_info)
    return fields


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; used by workers, whose lines the supervisor then merges.

    `app` is the worker's label. Usable from `logging.config.dictConfig`
    (`{"()": "qkhyper.jsonlog.JsonFormatter", "app": "users"}`), as uvicorn's
    `log_config` is.
    """

    def __init__(self, app: str = "") -> None:
        super().__init__()
        self.app = app

    def format(self, record: logging.LogRecord) -> str:
        return dumps(record_fields(record, self.app, self.formatException))


def json_logger(name: str, stream: TextIO, app: str, level: int) -> logging.Logger:
    """Logger `name` writing JSON objects to `stream` only: a server's own logger in a JSON-mode worker."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(app))
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.setLevel(level)
    logger.propagate = False
    return logger


def json_log_config(config: Mapping[str, Any], app: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict (uvicorn's `log_config`) with every formatter made JsonFormatter."""
    formatter = {"()": f"{__name__}.JsonFormatter", "app": app}
    # A copy: dictConfig converts nested dicts in place, and `config` may be a library's constant.
    result = copy.deepcopy(dict(config))
    result["formatters"] = {name: dict(formatter) for name in config.get("formatters", {})}
    return result


class JsonWriter:
    """The supervisor's output in JSON mode (implements `logs.LogWriter`)."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.time) -> None:
        self.stream = stream
        self.clock = clock
        self.formatter = JsonFormatter()

    def line(self, label: str, text: str) -> None:
        self._write(plain_fields(text, label, os.getpid(), self.clock()))

    def relay(self, label: str, pid: int, text: str) -> None:
        self._write(merge_line(text, label, pid, self.clock()))

    def record(self, label: str, record: logging.LogRecord) -> None:
        self._write(record_fields(record, label, self.formatter.formatException))

    def _write(self, fields: Mapping[str, Any]) -> None:
        self.stream.write(dumps(fields) + "\n")
        self.stream.flush()
