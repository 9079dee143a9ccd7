"""The control socket's two ends with a real unix socket in a temp folder, and a scripted controller.

The listener: mode 0600, a stale file replaced, a live one, a non-socket and
a too-long path left alone with one warning. The server: one answer per
connection, hostile requests answered with a failed line, a silent client
cut off at the request deadline (MockClock), a controller bug that ends one
connection and not the server, `stop` held open until the server ends. The
client: nothing there, nobody listening, no answer in time, a refusal.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from qkhyper.control.client import ask, call
from qkhyper.control.protocol import MAX_LINE, Request, Status, Stop, ok
from qkhyper.control.server import REQUEST_TIMEOUT, control_listener, serve_control
from qkhyper.errors import ControlFailed, NotRunning


def stale_socket(path: Path) -> None:
    """A socket file nobody listens on: what a supervisor killed by SIGKILL leaves."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()


def test_the_socket_is_the_owners_alone_and_removed_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "run" / "control.sock"
    with control_listener(str(path)) as sock:
        assert sock is not None
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert not path.exists()


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    stale_socket(path)
    with control_listener(str(path)) as sock:
        assert sock is not None
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(path))  # it listens now
        probe.close()


def test_one_that_another_run_replaced_is_left_to_it(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    with control_listener(str(path)) as sock:
        assert sock is not None
        path.unlink()
        stale_socket(path)  # a later run's file
        replaced = os.lstat(path).st_ino
    assert os.lstat(path).st_ino == replaced


@pytest.mark.parametrize("case", ["live", "file", "long", "off"])
def test_no_control_socket_is_a_warning_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    path = tmp_path / "control.sock"
    other = None
    if case == "live":
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        other.bind(str(path))
        other.listen(1)
    elif case == "file":
        path.write_text("notes")
    elif case == "long":
        path = tmp_path / ("x" * 120) / "control.sock"
    with caplog.at_level(logging.WARNING), control_listener("" if case == "off" else str(path)) as sock:
        assert sock is None
    expected = {
        "live": f"warning: no control socket: control socket {path} is in use by a running server",
        "file": f"warning: no control socket: control socket {path}: the path exists and is not a socket",
        "long": f"warning: no control socket: {path} is longer than the 107 bytes",
        "off": None,
    }[case]
    if expected is None:
        assert caplog.records == []
    else:
        [record] = caplog.records
        assert record.getMessage().startswith(expected)
    if case == "file":
        assert path.read_text() == "notes"  # never deleted
    if other is not None:
        other.close()


class Scripted:
    """A controller that answers from a function, and records what it was asked."""

    def __init__(self, answer: Any = None) -> None:
        self.asked: list[Request] = []
        self.answer = answer or (lambda request: ok(seen=type(request).__name__))

    async def control(self, request: Request) -> dict[str, Any]:
        self.asked.append(request)
        return dict(self.answer(request))


async def exchange(path: Path, data: bytes) -> bytes:
    """Send `data`, then read until the server closes."""
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(data)
        received = b""
        while chunk := await stream.receive_some(65536):
            received += chunk
        return received


@pytest.fixture
def bound(tmp_path: Path) -> Iterator[tuple[Path, socket.socket]]:
    path = tmp_path / "control.sock"
    with control_listener(str(path)) as sock:
        assert sock is not None
        yield path, sock


@pytest.mark.parametrize(
    ("sent", "answer"),
    [
        (b'{"command": "status"}\n', b'{"ok":true,"seen":"Status"}\n'),
        (b'{"command": "status"}', b'{"ok":true,"seen":"Status"}\n'),  # the client ended its side instead
        (b"GET / HTTP/1.1\r\n\r\n", b'{"ok":false,"error":"request is not JSON"}\n'),
        (
            b'{"command": "rm -rf"}\n',
            b'{"ok":false,"error":"unknown command \'rm -rf\'; commands: status, restart, scale, reload, stop"}\n',
        ),
        (b"x" * (MAX_LINE + 1), f'{{"ok":false,"error":"request longer than {MAX_LINE} bytes"}}\n'.encode()),
    ],
)
def test_one_request_one_answer(bound: tuple[Path, socket.socket], sent: bytes, answer: bytes) -> None:
    path, sock = bound
    controller = Scripted()

    async def main() -> bytes:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_control, sock, controller)
            if sent.endswith(b"}"):
                stream = await trio.open_unix_socket(str(path))
                await stream.send_all(sent)
                await stream.send_eof()
                received = b""
                while chunk := await stream.receive_some():
                    received += chunk
                await stream.aclose()
            else:
                received = await exchange(path, sent)
            nursery.cancel_scope.cancel()
            return received

    assert trio.run(main) == answer
    assert len(controller.asked) == (1 if answer.startswith(b'{"ok":true') else 0)


def test_a_silent_client_is_cut_off_at_the_deadline(bound: tuple[Path, socket.socket]) -> None:
    path, sock = bound

    async def main() -> tuple[bytes, float]:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_control, sock, Scripted())
            stream = await trio.open_unix_socket(str(path))
            start = trio.current_time()
            received = await stream.receive_some()
            elapsed = trio.current_time() - start
            await stream.aclose()
            nursery.cancel_scope.cancel()
            return received, elapsed

    received, elapsed = trio.run(main, clock=MockClock(autojump_threshold=0))
    assert received == f'{{"ok":false,"error":"no request line within {REQUEST_TIMEOUT:g} s"}}\n'.encode()
    assert elapsed == REQUEST_TIMEOUT


def test_a_failing_command_ends_its_connection_and_not_the_server(
    bound: tuple[Path, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    path, sock = bound

    def answer(request: Request) -> dict[str, Any]:
        if not isinstance(request, Status):
            raise RuntimeError("bug")
        return ok()

    async def main() -> list[bytes]:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_control, sock, Scripted(answer))
            first = await exchange(path, b'{"command": "reload"}\n')
            second = await exchange(path, b'{"command": "status"}\n')
            nursery.cancel_scope.cancel()
            return [first, second]

    assert trio.run(main) == [b"", b'{"ok":true}\n']
    assert "control socket: request failed: RuntimeError: bug" in caplog.text


def test_stop_holds_the_connection_until_the_server_ends(bound: tuple[Path, socket.socket]) -> None:
    path, sock = bound

    async def main() -> tuple[bytes, bytes]:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_control, sock, Scripted())
            stream = await trio.open_unix_socket(str(path))
            await stream.send_all(b'{"command": "stop"}\n')
            answer = await stream.receive_some()
            with trio.move_on_after(1):  # held open: nothing more arrives while the server runs
                rest = await stream.receive_some()
                raise AssertionError(f"closed early: {rest!r}")
            nursery.cancel_scope.cancel()
        return answer, await stream.receive_some()

    answer, after = trio.run(main, clock=MockClock(autojump_threshold=0))
    assert answer == b'{"ok":true,"seen":"Stop"}\n' and after == b""


def test_the_client_says_nothing_runs_when_nothing_listens(tmp_path: Path) -> None:
    with pytest.raises(NotRunning, match=r"nothing is running: no supervisor answers on .*missing.sock"):
        ask(tmp_path / "missing.sock", Status(), 5)
    stale_socket(tmp_path / "stale.sock")
    with pytest.raises(NotRunning):
        ask(tmp_path / "stale.sock", Status(), 5)


@pytest.fixture
def one_shot(tmp_path: Path) -> Iterator[tuple[Path, list[bytes]]]:
    """A listener that answers each connection with the next scripted bytes (None: say nothing)."""
    path = tmp_path / "scripted.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    script: list[bytes] = []
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(MAX_LINE)
            reply = script.pop(0)
            hold = reply.startswith(b"hold:")
            reply = reply.removeprefix(b"hold:")
            if reply:
                conn.sendall(reply)
            if hold:
                held.append(conn)
            else:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, script
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    for conn in held:
        conn.close()
    thread.join(5)


def test_the_client_reports_refusals_silence_and_hang_ups(one_shot: tuple[Path, list[bytes]]) -> None:
    path, script = one_shot
    script += [b'{"ok": false, "error": "still starting"}\n', b"", b"hold:"]
    with pytest.raises(ControlFailed, match="^still starting$"):
        ask(path, Status(), 5)
    with pytest.raises(ControlFailed, match="closed the connection without an answer"):
        ask(path, Status(), 5)
    with pytest.raises(ControlFailed, match=r"no answer from .* within 0.3 s"):
        ask(path, Status(), 0.3)


def test_wait_closed_tells_a_closed_end_from_a_deadline(one_shot: tuple[Path, list[bytes]]) -> None:
    path, script = one_shot
    script += [b'{"ok": true}\n', b'hold:{"ok": true}\n']
    connection = call(path, Stop(), 5)
    assert connection.answer == {"ok": True}
    assert connection.wait_closed(time.monotonic() + 30) is True
    assert call(path, Stop(), 5).wait_closed(time.monotonic() + 0.3) is False
