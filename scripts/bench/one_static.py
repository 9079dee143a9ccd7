"""Serve one static worker in this process, without a supervisor, so valgrind can run it.

    python scripts/bench/one_static.py static CONFIG PORT
    python scripts/bench/one_static.py bare ROOT PORT BACKEND

`static`: the worker is built exactly as `qkhyper static` builds it (the same
plan and ChildSpec, from `[qkhyper.static]` in CONFIG); only the socket, the
readiness pipe and the lifeline are made here.

`bare`: the floor to compare it with. Plain Hypercorn or uvicorn (uvloop,
and httptools for uvicorn, as qkhyper picks), no qkhyper code at all, serving
a tiny ASGI app that answers `/1k.txt` from ROOT with the bytes read once at
start-up and the same response headers qkhyper's static server sends.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import Any


def static(config: str, port: int) -> int:
    from qkhyper.api import static_options
    from qkhyper.config.load import load_settings
    from qkhyper.supervisor.child import run
    from qkhyper.supervisor.plan import builtin_plan

    settings = load_settings(config)
    plan = builtin_plan(settings, "static", "qkhyper.static.app:create", static_options(settings), port=port, workers=1)
    sock = socket.create_server(("127.0.0.1", port))
    sock.set_inheritable(True)
    _, ready = os.pipe()
    lifeline, _keep = os.pipe()  # the write end stays open in this process: the worker lives
    return run(plan.units[0].child, sock.fileno(), ready, lifeline)


def bare_app(root: str) -> Any:
    body = (Path(root) / "1k.txt").read_bytes()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"etag", b'"0123456789abcdef0123456789abcdef"'),
        (b"cache-control", b"no-cache"),
        (b"last-modified", b"Fri, 27 Nov 2026 15:00:00 GMT"),
        (b"x-content-type-options", b"nosniff"),
        (b"content-length", str(len(body)).encode()),
    ]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    end = {"type": "http.response.body", "body": body}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send(start)
        await send(end)

    return app


def bare(root: str, port: int, backend: str) -> int:
    import uvloop

    app = bare_app(root)
    if backend == "uvicorn":
        import uvicorn

        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", access_log=False, log_level="warning"
        )
        uvicorn.Server(config).run()
        return 0
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    hconfig = Config()
    hconfig.bind = [f"127.0.0.1:{port}"]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(app, hconfig, mode="asgi"))
    return 0


def main(argv: list[str]) -> int:
    mode, where, port, *rest = argv
    if mode == "static":
        return static(where, int(port))
    return bare(where, int(port), rest[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
