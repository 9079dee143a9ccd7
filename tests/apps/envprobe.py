"""An app that reports the QKT_* variables it saw when it was imported, and its own argv."""

import os
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

AT_IMPORT = {name: value for name, value in os.environ.items() if name.startswith("QKT_")}
LISTEN = {name: os.environ.get(name) for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")}
SYSTEMD = {name: os.environ.get(name) for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}


async def env(request: Request) -> JSONResponse:
    return JSONResponse({"env": AT_IMPORT, "listen": LISTEN, "systemd": SYSTEMD, "pid": os.getpid(), "argv": sys.argv})


app = Starlette(routes=[Route("/env", env)])
other = Starlette(routes=[Route("/env", env)])
