"""One worker process: spawn, relay its output, wait for readiness, stop it.

Readiness and parent death travel over pipes (see `child.py`); nothing polls.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from typing import Any

import trio

from ..errors import AppStartupError
from ..logs import LabelWriter
from .childenv import worker_environ
from .plan import Unit

log = logging.getLogger("qkhyper.supervisor")

# Longest line relayed whole; longer output is cut into pieces of this size.
MAX_LINE = 64 * 1024


def describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Worker:
    """A child process serving one unit on the unit's shared socket."""

    def __init__(self, unit: Unit, sock: socket.socket, lifeline: int, writer: LabelWriter) -> None:
        self.unit = unit
        self.sock = sock
        self.lifeline = lifeline
        self.writer = writer
        self.process: trio.Process | None = None
        self.started_at = 0.0
        self._ready_fd = -1
        self.relayed = trio.Event()  # set once all of the child's output was relayed

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process else None

    async def spawn(self, nursery: trio.Nursery) -> None:
        """Start the process; its output is relayed by a task in `nursery`."""
        ready_r, ready_w = os.pipe()
        argv = [
            sys.executable,
            "-m",
            "qkhyper.supervisor.child",
            self.unit.child.encode(),
            str(self.sock.fileno()),
            str(ready_w),
            str(self.lifeline),
        ]
        env = worker_environ(os.environ, self.unit.env)
        try:
            self.process = await trio.lowlevel.open_process(
                argv,
                pass_fds=(self.sock.fileno(), ready_w, self.lifeline),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                # Its own process group: a terminal's Ctrl-C reaches only the supervisor.
                process_group=0,
            )
        finally:
            os.close(ready_w)
        self._ready_fd = ready_r
        self.started_at = trio.current_time()
        assert self.process.stdout is not None
        nursery.start_soon(self._relay, self.process.stdout)

    async def _relay(self, stream: trio.abc.ReceiveStream) -> None:
        buffer = b""
        label = self.unit.label
        try:
            async with stream:
                while chunk := await stream.receive_some(MAX_LINE):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    if len(buffer) >= MAX_LINE:
                        lines.append(buffer)
                        buffer = b""
                    for line in lines:
                        self.writer.line(label, line.decode(errors="replace").rstrip("\r"))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the pipe broke with the child; what was read is written below
        finally:
            if buffer:
                self.writer.line(label, buffer.decode(errors="replace"))
            self.relayed.set()

    async def wait_ready(self, timeout: float) -> None:
        """Wait for the child's readiness message.

        Raises:
            AppStartupError: the child reported an error, died, or took too long.
        """
        message = await self._read_message(timeout)
        if "ready" in message:
            return
        if "error" in message:
            self.kill()
            raise AppStartupError(self.unit.label, str(message["error"]))
        self.kill()
        if message.get("timeout"):
            raise AppStartupError(self.unit.label, f"worker (pid {self.pid}) was not ready within {timeout:g} s")
        with trio.move_on_after(2):
            await self.wait()
        raise AppStartupError(
            self.unit.label, f"worker (pid {self.pid}) {describe_exit(self.returncode)} before it was ready"
        )

    async def _read_message(self, timeout: float) -> dict[str, Any]:
        stream = trio.lowlevel.FdStream(self._ready_fd)
        data = b""
        async with stream:
            with trio.move_on_after(timeout) as scope:
                while b"\n" not in data and (chunk := await stream.receive_some(4096)):
                    data += chunk
        if scope.cancelled_caught:
            return {"timeout": True}
        try:
            message = json.loads(data.split(b"\n")[0]) if data else {}
        except ValueError:
            message = {}
        return message if isinstance(message, dict) else {}

    async def wait(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.returncode is None:
            try:
                self.process.send_signal(signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    async def stop(self, timeout: float) -> int:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        self.signal(signal.SIGTERM)
        with trio.move_on_after(timeout):
            code = await self.wait()
            log.info("%s: worker %d %s", self.unit.label, self.pid, describe_exit(code))
            return code
        log.warning("%s: worker %d did not stop within %g s; killing it", self.unit.label, self.pid, timeout)
        self.kill()
        return await self.wait()
