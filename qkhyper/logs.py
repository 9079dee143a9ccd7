"""Labelled log lines: every line says which app (or qkhyper itself) wrote it.

Labels are coloured only when the stream is a terminal, so files and CI logs
stay plain text. With `log_format = "json"` the same calls write one JSON
object a line instead (`jsonlog.JsonWriter`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Protocol, TextIO

from .jsonlog import JsonWriter

_COLOURS = ["36", "35", "33", "32", "34", "31", "96", "95", "93", "92"]
SUPERVISOR_LABEL = "qkhyper"


class LogWriter(Protocol):
    """Where the supervisor's output goes: its own lines, its workers' lines, its log records."""

    def line(self, label: str, text: str) -> None:
        """A line qkhyper itself writes on behalf of `label` (the ready table, the gateway's routes)."""
        ...

    def relay(self, label: str, pid: int, text: str) -> None:
        """A line worker `pid` of `label` wrote to its stdout or stderr."""
        ...

    def record(self, label: str, record: logging.LogRecord) -> None:
        """A record of the supervisor's own loggers."""
        ...


class LabelWriter:
    """Writes `label | text` lines to one stream (implements `LogWriter`)."""

    def __init__(self, stream: TextIO, labels: list[str], colour: bool | None = None) -> None:
        self.stream = stream
        self.width = max(len(label) for label in [SUPERVISOR_LABEL, *labels])
        self.colour = _use_colour(stream) if colour is None else colour
        self._codes = {label: _COLOURS[i % len(_COLOURS)] for i, label in enumerate(labels)}
        self._codes[SUPERVISOR_LABEL] = "1"
        self.formatter = logging.Formatter("%(message)s")

    def prefix(self, label: str) -> str:
        text = f"{label:<{self.width}} |"
        if self.colour:
            return f"\x1b[{self._codes.get(label, '0')}m{text}\x1b[0m"
        return text

    def line(self, label: str, text: str) -> None:
        self.stream.write(f"{self.prefix(label)} {text}\n")
        self.stream.flush()

    def relay(self, label: str, pid: int, text: str) -> None:
        self.line(label, text)

    def record(self, label: str, record: logging.LogRecord) -> None:
        for line in self.formatter.format(record).splitlines() or [""]:
            self.line(label, line)


def make_writer(log_format: str, stream: TextIO, labels: list[str]) -> LogWriter:
    """The writer for `[qkhyper] log_format` ("text" or "json", checked at load)."""
    return JsonWriter(stream) if log_format == "json" else LabelWriter(stream, labels)


def _use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LabelHandler(logging.Handler):
    """Sends the supervisor's own log records through its writer."""

    def __init__(self, writer: LogWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.record(SUPERVISOR_LABEL, record)
        except Exception:  # never let a bad log call kill the supervisor
            self.handleError(record)


def configure(writer: LogWriter, level: int = logging.INFO) -> None:
    """Route the `qkhyper` loggers through `writer` at `level` (called once by the CLI)."""
    logger = logging.getLogger("qkhyper")
    for handler in list(logger.handlers):
        if isinstance(handler, LabelHandler):
            logger.removeHandler(handler)
    logger.addHandler(LabelHandler(writer))
    logger.setLevel(level)
    logger.propagate = False


def format_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart (the ready table, `qkhyper check`)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
