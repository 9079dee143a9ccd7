"""Shared test helpers: free ports, configs in a temp folder, real `qkhyper` processes.

Nothing here sleeps for a fixed time: helpers wait for a log line or a
response, each with a deadline, so a hang fails the test instead of stalling.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

TESTS = Path(__file__).parent
DEADLINE = 15.0  # seconds any raw-socket wait may take


# The servers a worker may run: "uvicorn-h11" is uvicorn with httptools hidden
# (tests/backends/no_httptools first on PYTHONPATH), so it takes its h11 protocol.
BACKENDS = ["hypercorn", "uvicorn", "uvicorn-h11"]


def backend_env(backend: str) -> tuple[list[str], dict[str, str]]:
    """The command-line flags and extra environment that run `backend` (one of BACKENDS, or "hypercorn-trio")."""
    if backend == "hypercorn-trio":
        return ["--backend", "hypercorn", "--worker-class", "trio"], {}
    if backend != "uvicorn-h11":
        return ["--backend", backend], {}
    paths = [str(TESTS / "backends" / "no_httptools"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return ["--backend", "uvicorn"], {"PYTHONPATH": os.pathsep.join(paths)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QKHYPER_")}
    env.update(NO_COLOR="1", **extra)
    return env


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A temp folder holding the test apps as the package `apps`."""
    shutil.copytree(TESTS / "apps", tmp_path / "apps")
    return tmp_path


def write_config(folder: Path, apps: list[dict[str, object]], top: str = "", qkhyper: str = "") -> Path:
    """Write `hypercorn.toml` with the given apps (ports default to free ones)."""
    lines = [top, "[qkhyper]", 'host = "127.0.0.1"', qkhyper]
    for app in apps:
        app = {"port": free_port(), **app}
        lines.append("[[qkhyper.apps]]")
        lines += [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in app.items()]
    path = folder / "hypercorn.toml"
    path.write_text("\n".join(lines).replace("'", '"') + "\n")
    return path


class Qkhyper:
    """A running `python -m qkhyper` with its output collected line by line."""

    def __init__(
        self, args: list[str], cwd: Path, env: dict[str, str] | None = None, command: list[str] | None = None
    ) -> None:
        """`command` runs qkhyper (default `python -m qkhyper`; tests/packaging/test_pyz.py runs a zipapp)."""
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "qkhyper"]), *args],
            cwd=cwd,
            env=env or clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 30.0, start: int = 0) -> re.Match[str]:
        """Wait for a line matching `pattern` (from line `start` on) and return the match."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    if match := regex.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r}; output:\n{self.output}")
                self._changed.wait(min(left, 0.2))

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.wait_for(r"ready: \d+ app", timeout)

    def pids(self, label: str) -> list[int]:
        """Worker pids of `label` from the last ready table or roll line."""
        match = None
        for line in self.lines:
            found = re.search(rf"\| {re.escape(label)}\s+\S+.*https?://\S+\s+([\d, ]+)$", line)
            match = found or match
        assert match, f"no pids for {label} in:\n{self.output}"
        return [int(p) for p in match.group(1).split(", ")]

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)


ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def json_objects(lines: list[str]) -> list[dict[str, Any]]:
    """Every line as a JSON object with the keys every line has (`log_format = "json"`); fails naming the line."""
    objects = []
    for line in lines:
        try:
            fields = json.loads(line)
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}") from None
        assert isinstance(fields, dict), line
        assert ISO_MS.match(fields.get("ts", "")), line
        assert fields.get("level") in {"debug", "info", "warning", "error", "critical"}, line
        assert isinstance(fields.get("app"), str) and isinstance(fields.get("pid"), int), line
        assert isinstance(fields.get("msg"), str), line
        objects.append(fields)
    return objects


@pytest.fixture
def run_qkhyper() -> Iterator[type[Qkhyper]]:
    """Start `qkhyper` processes; every one is stopped when the test ends."""
    started: list[Qkhyper] = []

    class Tracked(Qkhyper):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield Tracked
    for process in started:
        process.stop()


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a `qkhyper` command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "qkhyper", *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def connect(port: int) -> socket.socket:
    """A raw connection to a local server, for bytes an HTTP client would not send."""
    return socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)


def read_to_close(sock: socket.socket, deadline: float = DEADLINE) -> bytes:
    """All the server sends until it closes the connection; fails if it is still open at the deadline."""
    end = time.monotonic() + deadline
    chunks: list[bytes] = []
    while True:
        sock.settimeout(max(end - time.monotonic(), 0.001))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"still open after {deadline} s; received {b''.join(chunks)[:300]!r}") from None
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def exchange(port: int, data: bytes) -> bytes:
    with connect(port) as sock:
        sock.sendall(data)
        return read_to_close(sock)


def get(url: str, **kwargs: object) -> httpx.Response:
    return httpx.get(url, timeout=30, **kwargs)  # type: ignore[arg-type]


def socket_activate(
    project: Path, port: int, app: str, path: str, *setenv: str
) -> tuple[subprocess.Popen[bytes], httpx.Response]:
    """`qkhyper serve users` (`app` on `port`) under systemd's own launcher, and its first answer at `path`.

    systemd-socket-activate listens, then execs qkhyper on the first connection;
    that request waits in the backlog until a worker accepts it. It hands the
    program a bare environment: `setenv` ("NAME=value") and PYTHONPATH are passed on.
    """
    config = write_config(project, [{"name": "users", "app": app, "port": port}])
    command = [sys.executable, "-m", "qkhyper", "serve", "users", "--config", str(config)]
    keep = [f"--setenv={name}" for name in ("PYTHONPATH",) if name in os.environ]
    keep += [f"--setenv={pair}" for pair in setenv]
    process = subprocess.Popen(
        ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=users", *keep, *command],
        cwd=project,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):  # poll until systemd-socket-activate listens; each request has its own deadline
        try:
            return process, httpx.get(f"http://127.0.0.1:{port}{path}", timeout=60)
        except httpx.ConnectError:
            threading.Event().wait(0.05)
    process.kill()
    process.wait(30)
    raise AssertionError("systemd-socket-activate never listened")
