"""Apps that fail in the ways users' apps do."""

from contextlib import asynccontextmanager

from fastapi import FastAPI


@asynccontextmanager
async def _failing(app: FastAPI):
    raise RuntimeError("database unreachable")
    yield


startup_fails = FastAPI(lifespan=_failing)


@asynccontextmanager
async def _failing_after_probe(app: FastAPI):
    """Fail only once the probe app has started, so a test sees a sibling to clean up."""
    import asyncio
    import os

    for _ in range(600):
        if os.path.exists(os.environ.get("PROBE_PIDS", "")):
            break
        await asyncio.sleep(0.05)
    raise RuntimeError("database unreachable")
    yield


startup_fails_after_probe = FastAPI(lifespan=_failing_after_probe)


async def no_lifespan(scope, receive, send):
    """A bare ASGI app that rejects lifespan the way many hand-written apps do."""
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"plain"})


not_an_app = 42
