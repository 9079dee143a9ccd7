"""Labelled log lines: plain in files and pipes, coloured on a terminal."""

from __future__ import annotations

import io
import os
import pty

from qkhyper.logs import LabelWriter, format_table


def test_plain_when_not_a_terminal() -> None:
    stream = io.StringIO()
    LabelWriter(stream, ["users", "orders"]).line("users", "hello")
    assert stream.getvalue() == "users   | hello\n"


def test_coloured_on_a_terminal(monkeypatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as tty:
            writer = LabelWriter(tty, ["users"])
            assert writer.colour
            assert writer.prefix("users") == "\x1b[36musers   |\x1b[0m"
        monkeypatch.setenv("NO_COLOR", "1")
        with os.fdopen(follower, "w", closefd=False) as tty:
            assert not LabelWriter(tty, ["users"]).colour
    finally:
        os.close(leader)
        os.close(follower)


def test_format_table() -> None:
    assert format_table([("app", "url"), ("users", "http://x")]) == ["app    url", "users  http://x"]
