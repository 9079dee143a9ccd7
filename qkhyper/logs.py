"""Labelled log lines: every line says which app (or qkhyper itself) wrote it.

Labels are coloured only when the stream is a terminal, so files and CI logs
stay plain text.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TextIO

_COLOURS = ["36", "35", "33", "32", "34", "31", "96", "95", "93", "92"]
SUPERVISOR_LABEL = "qkhyper"


class LabelWriter:
    """Writes `label | text` lines to one stream."""

    def __init__(self, stream: TextIO, labels: list[str], colour: bool | None = None) -> None:
        self.stream = stream
        self.width = max(len(label) for label in [SUPERVISOR_LABEL, *labels])
        self.colour = _use_colour(stream) if colour is None else colour
        self._codes = {label: _COLOURS[i % len(_COLOURS)] for i, label in enumerate(labels)}
        self._codes[SUPERVISOR_LABEL] = "1"

    def prefix(self, label: str) -> str:
        text = f"{label:<{self.width}} |"
        if self.colour:
            return f"\x1b[{self._codes.get(label, '0')}m{text}\x1b[0m"
        return text

    def line(self, label: str, text: str) -> None:
        self.stream.write(f"{self.prefix(label)} {text}\n")
        self.stream.flush()


def _use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LabelHandler(logging.Handler):
    """Sends the supervisor's own log records through a LabelWriter."""

    def __init__(self, writer: LabelWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # never let a bad log call kill the supervisor
            self.handleError(record)
            return
        for line in text.splitlines() or [""]:
            self.writer.line(SUPERVISOR_LABEL, line)


def configure(writer: LabelWriter, debug: bool = False) -> None:
    """Route the `qkhyper` loggers through `writer` (called once by the CLI)."""
    logger = logging.getLogger("qkhyper")
    for handler in list(logger.handlers):
        if isinstance(handler, LabelHandler):
            logger.removeHandler(handler)
    handler = LabelHandler(writer)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False


def format_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart (the ready table, `qkhyper check`)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
