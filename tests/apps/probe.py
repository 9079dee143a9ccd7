"""A FastAPI app whose routes show what the server and qkhyper handed it."""

import asyncio
import os
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request


def _record(event: str) -> None:
    path = os.environ.get("PROBE_LOG")
    if path:
        with open(path, "a") as file:
            file.write(f"{event}\n")


def make(name: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        _record(f"startup {name}")
        if os.environ.get("PROBE_PIDS"):
            with open(os.environ["PROBE_PIDS"], "a") as file:
                file.write(f"{os.getpid()}\n")
        # A resource the routes need: without lifespan, they fail.
        yield {"resource": {"name": name, "opened": True}}
        _record(f"shutdown {name}")

    app = FastAPI(lifespan=lifespan)

    @app.get("/scope")
    async def scope(request: Request) -> dict:
        s = request.scope
        return {
            "root_path": s.get("root_path"),
            "path": s["path"],
            "raw_path": s.get("raw_path", b"").decode("latin-1"),
            "client": s["client"][0] if s.get("client") else None,
            "scheme": s["scheme"],
            "host": request.headers.get("host"),
            "url": str(request.url),
            "resource": request.state.resource,
            "pid": os.getpid(),
        }

    @app.get("/slow")
    async def slow(seconds: float = 1.0) -> dict:
        _record(f"slow {name}")
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    @app.get("/block")
    async def block(seconds: float = 60.0) -> dict:
        """A sync sleep in an async route: the event loop stops, as with a blocking driver call."""
        _record(f"block {name}")
        time.sleep(seconds)
        return {"blocked": seconds}

    grown: list[bytes] = []

    @app.get("/grow")
    async def grow(mb: int = 100) -> dict:
        """Hold `mb` MB more, written so the pages are resident: a leak, on demand."""
        grown.append(b"\x01" * (mb * 1024 * 1024))
        return {"held_mb": sum(len(b) for b in grown) // (1024 * 1024), "pid": os.getpid()}

    @app.get("/items/")
    async def items() -> list:
        return [1, 2]

    @app.post("/items/")
    async def make_item(request: Request) -> dict:
        """A POST behind a trailing-slash redirect: --fastapi-redirect must send the body again."""
        return {"method": request.method, "body": (await request.body()).decode()}

    return app


app = make("probe")
alpha = make("alpha")
beta = make("beta")


def factory() -> FastAPI:
    return make("factory")
