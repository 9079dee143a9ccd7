"""A worker process, started by process.py's BOOTSTRAP with the args `SPEC_JSON FD READY_FD LIFELINE_FD`.

The supervisor bound the socket (FD) and holds the only write end of the
lifeline pipe; when the supervisor dies, even by SIGKILL, the read end here
sees EOF and the worker stops (`PR_SET_PDEATHSIG` is not used: it fires when
the forking *thread* exits, and trio forks from short-lived worker threads).
READY_FD is the report pipe (messages.py): `{"ready": pid}` once every app's
lifespan startup has finished, or `{"error": "..."}`; then heartbeats with the
request count, from the event loop. On STACK_SIGNAL the worker prints every
thread's stack (faulthandler: C code, so it answers while the loop is blocked),
which the supervisor asks for before it kills a hung worker.
"""

from __future__ import annotations

import faulthandler
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from ..asgi.edge import EdgeMiddleware
from ..asgi.host import HostApp, make_mounts
from ..asgi.proxy_headers import ProxyHeadersMiddleware, RootPathMiddleware, TrustedPeers
from ..asgi.types import ASGIApp
from ..backends import ServerOptions, get_backend
from ..config.hypercorn_values import log_level
from ..errors import QkhyperError
from ..jsonlog import JsonFormatter
from ..loader import load_app
from ..metrics.recorder import Recorder
from ..proctitle import set_title
from ..tls import check_files, take_password
from .messages import STACK_SIGNAL, Beat, Failed, Message, Ready, encode
from .plan import ChildSpec

# After the supervisor vanished: time left for a graceful stop before exiting hard.
ORPHAN_GRACE = 1.5


class Reporter:
    """Writes this worker's reports to the supervisor: ready or failed once, then heartbeats.

    With metrics on, each beat carries the recorder's snapshot (metrics/recorder.py).
    """

    def __init__(self, fd: int, recorder: Recorder | None = None) -> None:
        self.fd: int | None = fd
        self.recorder = recorder
        self.requests = 0  # the count of the last beat, for the final one

    def beat(self, requests: int) -> None:
        self.requests = requests
        self.send(Beat(requests, None if self.recorder is None else self.recorder.snapshot()))

    def send(self, message: Message) -> None:
        if self.fd is None:
            return
        data = encode(message)
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            self.fd = None  # the supervisor is gone; the lifeline will stop us


def watch_lifeline(fd: int) -> None:
    """Stop this worker when the supervisor's end of the lifeline closes."""

    def watch() -> None:
        while True:
            try:
                if os.read(fd, 64) == b"":
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE)
        os._exit(1)

    threading.Thread(target=watch, name="qkhyper-lifeline", daemon=True).start()


def build_app(spec: ChildSpec, reporter: Reporter) -> ASGIApp:
    """The app a worker serves: the host app, wrapped with the edge checks outermost."""
    return EdgeMiddleware(_host_app(spec, reporter), spec.limits)


def _host_app(spec: ChildSpec, reporter: Reporter) -> ASGIApp:
    apps = [(ref.name, ref.prefix, load_app(ref.name, ref.target, Path(spec.base_dir))) for ref in spec.apps]
    if spec.options is not None:  # qkhyper's own server: the target is its factory
        metrics = reporter.recorder  # None when metrics are off: the apps then count nothing
        apps = [(name, prefix, factory(spec.options, metrics=metrics)) for name, prefix, factory in apps]
    host = HostApp(
        make_mounts(apps, spec.ready_timeout),
        on_ready=lambda: reporter.send(Ready(os.getpid())),
        on_failed=lambda message: reporter.send(Failed(message)),
        on_beat=reporter.beat,
        beat_interval=spec.beat_interval,
        request_limit=spec.request_limit,
    )
    if spec.options is not None:
        return host
    app: ASGIApp = host
    if spec.docs_assets == "local":
        from ..asgi.docs_assets import DocsAssetsMiddleware

        app = DocsAssetsMiddleware(app)
    app = ProxyHeadersMiddleware(app, TrustedPeers(spec.trusted))
    root_path = spec.hypercorn.get("root_path")  # applied here for both servers (backends/serverkeys.py)
    return RootPathMiddleware(app, root_path) if root_path else app


def _log_to_stderr(spec: ChildSpec) -> None:
    """qkhyper's own records in a child, at the level of `loglevel`; the servers configure their loggers themselves.

    In JSON mode each record is a JSON object, which the supervisor merges into
    its own line. The proxy's access lines get a handler of their own: bare in
    text mode (Apache's layout needs no `[INFO]`), and JSON objects whenever
    `access_log_format = "json"`, also in text mode.
    """
    level = log_level(spec.hypercorn, spec.debug)
    json_lines = spec.log_format == "json"
    text = logging.Formatter("[%(levelname)s] %(message)s")
    _stderr_logger("qkhyper", level, JsonFormatter(spec.label) if json_lines else text)
    options = spec.options.settings if spec.options is not None else None
    json_access = json_lines or (options is not None and options.access_log_format == "json")
    _stderr_logger("qkhyper.access", level, JsonFormatter(spec.label) if json_access else logging.Formatter())


def _stderr_logger(name: str, level: int, formatter: logging.Formatter) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def run(spec: ChildSpec, fd: int, ready_fd: int, lifeline_fd: int) -> int:
    if spec.title:
        set_title(spec.title)  # the supervisor already said it if titles cannot be set here
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the supervisor decides how we stop
    faulthandler.register(STACK_SIGNAL, file=sys.stderr, all_threads=True)
    watch_lifeline(lifeline_fd)
    _log_to_stderr(spec)
    tls = take_password(spec.tls, os.environ)  # before any app is imported: the app never sees the password
    reporter = Reporter(ready_fd, Recorder() if spec.metrics and spec.options is not None else None)
    try:
        if tls is not None:
            check_files(tls)  # a roll after renewed certificates: fail before ready, the old worker stays
        app = build_app(spec, reporter)
        backend = get_backend(spec.backend)
    except QkhyperError as exc:
        reporter.send(Failed(str(exc)))
        return 1
    sock = socket.socket(fileno=fd)
    # Everything imported and built so far lives as long as the worker: move it out of
    # the cyclic collector's way, so a full collection under load scans only what
    # requests allocate (measured on the gateway: p99 down from 31-43 to 28-30 ms at 64
    # connections; Instagram's reason for gc.freeze, docs.python.org/3/library/gc.html#gc.freeze).
    gc.collect()
    gc.freeze()
    ok = backend(
        app,
        sock,
        ServerOptions(
            spec.worker_class,
            spec.hypercorn,
            spec.limits,
            tls,
            ws_compression=spec.options is None,
            log_format=spec.log_format,
            label=spec.label,
        ),
    )
    if reporter.recorder is not None:  # what was counted since the last beat, before the pipe closes
        reporter.beat(reporter.requests)
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    spec_json, fd, ready_fd, lifeline_fd = argv
    return run(ChildSpec.decode(spec_json), int(fd), int(ready_fd), int(lifeline_fd))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
