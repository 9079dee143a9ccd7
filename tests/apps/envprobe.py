"""An app that reports the QKT_* variables it saw when it was imported, qkhyper's private ones, and its argv."""

import os
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

AT_IMPORT = {name: value for name, value in os.environ.items() if name.startswith("QKT_")}
QKHYPER_PRIVATE = sorted(name for name in os.environ if name.startswith("_QKHYPER"))  # the worker's own, removed
LISTEN = {name: os.environ.get(name) for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")}
SYSTEMD = {name: os.environ.get(name) for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}


async def env(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "env": AT_IMPORT,
            "listen": LISTEN,
            "systemd": SYSTEMD,
            "pid": os.getpid(),
            "argv": sys.argv,
            "private": QKHYPER_PRIVATE,
        }
    )


app = Starlette(routes=[Route("/env", env)])
other = Starlette(routes=[Route("/env", env)])
