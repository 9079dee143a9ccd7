"""A worker process: spawn it, relay its output, read its reports, stop it.

Readiness, heartbeats and parent death travel over pipes (see `child.py` and
`messages.py`); nothing polls.

How a worker finds qkhyper: it is started as `sys.executable -c BOOTSTRAP
PATHS SPEC FD REPORT_FD LIFELINE_FD`, where PATHS is the supervisor's own
`sys.path` (JSON). BOOTSTRAP sets the worker's path to: the current folder
and the worker's `PYTHONPATH` (inherited, or an app's `env`), as `-m` would
put them first; then the supervisor's path; then whatever else the worker's
own start-up added. Then it runs `qkhyper.supervisor.child`. So the worker
imports qkhyper and its dependencies from exactly where the supervisor did,
however it was installed: a venv, an editable checkout, or a one-file
zipapp (`scripts/build-pyz`). There `sys.executable` is a plain Python that
cannot see the zip, and shiv put its unpacked site-packages on the
supervisor's path only: `-m qkhyper.supervisor.child` fails, or worse, runs
another installed qkhyper. A `PYTHONPATH` naming qkhyper's folder (shiv's
`--extend-pythonpath`) would put a whole site-packages ahead of the standard
library and change the apps' environment. Handing over `sys.path` is what
`multiprocessing`'s spawn does for the same reason. The path travels in
argv, not in the environment, so the worker's environment stays exactly
`childenv.worker_environ`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Hashable
from typing import Protocol

import trio

from ..logs import LogWriter
from .childenv import worker_environ
from .messages import STACK_SIGNAL, Beat, Message, Ready, decode
from .plan import Unit
from .worker import Heartbeat, describe_exit

log = logging.getLogger("qkhyper.supervisor")

# Longest line relayed whole; longer output is cut into pieces of this size.
MAX_LINE = 64 * 1024
# A stack dump is written in one go by a C signal handler: once output has
# started and then paused this long, it is complete.
STACK_QUIET = 0.2
_PAGE = os.sysconf("SC_PAGE_SIZE")
_MB = 1024 * 1024
# Run by the worker's interpreter before qkhyper can be imported (see the module docstring).
# `-c` puts "" first in sys.path; the absolute current folder replaces it, as `-m` has it.
BOOTSTRAP = """\
import json, os, sys
parent = json.loads(sys.argv.pop(1))
ahead = [os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
sys.path[:] = dict.fromkeys([*ahead, *parent, *sys.path[1:]])
from qkhyper.supervisor.child import main
sys.exit(main(sys.argv[1:]))
"""


class MetricsSink(Protocol):
    """Where a worker's beats go when metrics are on (`metrics.store.MetricsStore`)."""

    def update(self, worker: Hashable, app: str, requests: int, raw: object) -> None: ...

    def retire(self, worker: Hashable) -> None: ...


class ProcessWorker:
    """A child process serving one unit on the unit's shared socket (implements `Worker`)."""

    def __init__(
        self,
        unit: Unit,
        sock: socket.socket,
        lifeline: int,
        writer: LogWriter,
        request_limit: int = 0,
        title: str = "",
        metrics: MetricsSink | None = None,
    ) -> None:
        self.unit = unit
        self.metrics = metrics
        self.title = title
        self.sock = sock
        self.lifeline = lifeline
        self.writer = writer
        self.request_limit = request_limit
        self.process: trio.Process | None = None
        self.started_at = 0.0
        self.heartbeat = Heartbeat()
        self.relayed = trio.Event()
        self._first: Message | None = None
        self._answered = trio.Event()  # the first report arrived, or the pipe closed without one
        self._lines = 0  # lines relayed so far
        self._output = trio.Event()  # set (and replaced) whenever lines were relayed
        self._exit_logged = False

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process else None

    async def spawn(self, nursery: trio.Nursery) -> None:
        """Start the process; its output relay and report reader run in `nursery`."""
        report_r, report_w = os.pipe()
        spec = dataclasses.replace(self.unit.child, request_limit=self.request_limit, title=self.title)
        argv = [
            sys.executable,
            "-c",
            BOOTSTRAP,
            json.dumps(sys.path),
            spec.encode(),
            str(self.sock.fileno()),
            str(report_w),
            str(self.lifeline),
        ]
        env = worker_environ(os.environ, self.unit.env)
        try:
            self.process = await trio.lowlevel.open_process(
                argv,
                pass_fds=(self.sock.fileno(), report_w, self.lifeline),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                # Its own process group: a terminal's Ctrl-C reaches only the supervisor.
                process_group=0,
            )
        except BaseException:
            os.close(report_r)
            raise
        finally:
            os.close(report_w)
        self.started_at = trio.current_time()
        assert self.process.stdout is not None
        nursery.start_soon(self._relay, self.process.stdout)
        nursery.start_soon(self._read_reports, trio.lowlevel.FdStream(report_r))

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
                        self.writer.relay(label, self.pid, line.decode(errors="replace").rstrip("\r"))
                    self._relayed_lines(len(lines))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the pipe broke with the child; what was read is written below
        finally:
            if buffer:
                self.writer.relay(label, self.pid, buffer.decode(errors="replace"))
            self.relayed.set()

    def _relayed_lines(self, count: int) -> None:
        if count:
            self._lines += count
            self._output.set()
            self._output = trio.Event()

    async def _read_reports(self, stream: trio.lowlevel.FdStream) -> None:
        """Read the report pipe until the worker closes it (by exiting)."""
        buffer = b""
        try:
            async with stream:
                while chunk := await stream.receive_some(4096):
                    *lines, buffer = (buffer + chunk).split(b"\n")
                    for line in lines:
                        self._on_report(decode(line))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._answered.set()
            if self.metrics is not None:
                self.metrics.retire(self)  # it exited: its counters join the app's total

    def _on_report(self, message: Message | None) -> None:
        now = trio.current_time()
        if isinstance(message, Beat):
            self.heartbeat.beat(message.requests, now)
            if self.metrics is not None:
                self.metrics.update(self, self.unit.label, message.requests, message.metrics)
        elif message is not None and self._first is None:
            if isinstance(message, Ready):
                self.heartbeat.ready(now)
            self._first = message
            self._answered.set()

    async def ready(self) -> Message | None:
        await self._answered.wait()
        return self._first

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
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds.

        Two stops may overlap (a SIGTERM of the supervisor while a roll drains
        this worker): each waits, but the exit is logged once.
        """
        self.signal(signal.SIGTERM)
        with trio.move_on_after(timeout):
            code = await self.wait()
            self._log_exit(code)
            return code
        log.warning("%s: worker %d did not stop within %g s; killing it", self.unit.label, self.pid, timeout)
        self.kill()
        return await self.wait()

    def _log_exit(self, code: int) -> None:
        if self._exit_logged:
            return
        self._exit_logged = True
        log.info("%s: worker %d %s", self.unit.label, self.pid, describe_exit(code), extra=self._fields(code))

    def _fields(self, code: int) -> dict[str, object]:
        """What a JSON log line about this worker's exit carries as fields (`extra=`)."""
        return {"worker_app": self.unit.label, "worker_pid": self.pid, "exit_code": code}

    async def dump_stack(self, timeout: float) -> None:
        seen = self._lines
        self.signal(STACK_SIGNAL)
        with trio.move_on_after(timeout):
            while True:
                arrived = self._output
                with trio.move_on_after(STACK_QUIET) as quiet:
                    await arrived.wait()
                if quiet.cancelled_caught and self._lines > seen:
                    return

    def rss_mb(self) -> float | None:
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as statm:
                return int(statm.read().split()[1]) * _PAGE / _MB
        except (OSError, IndexError, ValueError):
            return None
