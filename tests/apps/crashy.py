"""Apps that misbehave after or during startup."""

import asyncio
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI


@asynccontextmanager
async def _never_ready(app: FastAPI):
    pids = os.environ.get("PROBE_PIDS")
    if pids:
        with open(pids, "a") as file:
            file.write(f"{os.getpid()}\n")
    await asyncio.sleep(3600)
    yield


never_ready = FastAPI(lifespan=_never_ready)


@asynccontextmanager
async def _ignores_shutdown(app: FastAPI):
    yield
    await asyncio.sleep(3600)  # lifespan shutdown that never ends


ignores_shutdown = FastAPI(lifespan=_ignores_shutdown)


@asynccontextmanager
async def _abandons_a_child(app: FastAPI):
    # Double fork: the grandchild is re-parented to PID 1 and exits at once.
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:
            os._exit(0)
        os._exit(0)
    os.waitpid(pid, 0)
    yield


abandons_a_child = FastAPI(lifespan=_abandons_a_child)
