"""An upstream for gateway tests: echoes what it got, streams, stalls, redirects, dies."""

import asyncio
import hashlib
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


def _record(event: str) -> None:
    path = os.environ.get("PROBE_LOG")
    if path:
        with open(path, "a") as file:
            file.write(event + "\n")


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "path": request.scope["path"],
            "root_path": request.scope.get("root_path", ""),
            # What the app routes on: the path below root_path (Starlette's rule).
            "route": request.scope["path"][len(request.scope.get("root_path", "")) :],
            "raw_path": request.scope["raw_path"].decode("latin-1"),
            "query": request.scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]],
            "body_size": len(body),
            "client_port": request.scope["client"][1],
            "pid": os.getpid(),
        },
        headers={"x-upstream": "yes", "connection": "x-secret", "x-secret": "hop", "keep-alive": "timeout=5"},
    )


async def cookies(request: Request) -> Response:
    response = Response("cookies")
    response.headers.append("set-cookie", "a=1")
    response.headers.append("set-cookie", "b=2")
    return response


async def events(request: Request) -> Response:
    count = int(request.query_params.get("count", "3"))
    pause = float(request.query_params.get("pause", "0.3"))

    async def stream():
        for i in range(count):
            yield f"data: event {i}\n\n".encode()
            await asyncio.sleep(pause)

    return StreamingResponse(stream(), media_type="text/event-stream")


async def download(request: Request) -> Response:
    size = int(request.query_params["size"])
    chunk = b"x" * (1024 * 1024)

    async def stream():
        left = size
        while left > 0:
            yield chunk[: min(left, len(chunk))]
            left -= len(chunk)

    return StreamingResponse(stream(), media_type="application/octet-stream")


async def upload(request: Request) -> Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
    return JSONResponse({"size": size, "sha256": digest.hexdigest()})


async def slow(request: Request) -> Response:
    _record("slow started")
    for _ in range(int(float(request.query_params.get("seconds", "30")) * 10)):
        if await request.is_disconnected():
            _record("slow cancelled")
            return Response(status_code=499)
        await asyncio.sleep(0.1)
    return JSONResponse({"slept": True})


async def slow_stream(request: Request) -> Response:
    async def stream():
        try:
            for i in range(600):
                yield f"data: tick {i}\n\n".encode()
                await asyncio.sleep(0.1)
        finally:
            _record("stream closed")

    return StreamingResponse(stream(), media_type="text/event-stream")


async def absolute_redirect(request: Request) -> Response:
    port = request.scope["server"][1]
    return RedirectResponse(f"http://127.0.0.1:{port}/echo?from=redirect", status_code=302)


async def items(request: Request) -> Response:
    return JSONResponse(["a", "b"])


async def ws_echo(websocket: WebSocket) -> None:
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=offered[-1] if offered else None)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                _record(f"ws closed {message.get('code')}")
                return
            if message.get("text") == "close-me":
                await websocket.close(code=4002, reason="bye")
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass


async def ws_scope(websocket: WebSocket) -> None:
    """What the app sees of a WebSocket: its scheme and Host, after qkhyper's proxy headers."""
    await websocket.accept()
    host = dict(websocket.scope["headers"]).get(b"host", b"").decode("latin-1")
    await websocket.send_json({"scheme": websocket.scope["scheme"], "host": host})
    await websocket.close()


async def ws_headers(websocket: WebSocket) -> None:
    """The handshake headers the app got, as [name, value] pairs."""
    await websocket.accept()
    headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in websocket.scope["headers"]]
    await websocket.send_json({"headers": headers})
    await websocket.close()


async def ws_big(websocket: WebSocket) -> None:
    """Sends one message of `size` bytes, then waits for the client to close."""
    await websocket.accept()
    await websocket.send_bytes(b"z" * int(websocket.query_params["size"]))
    try:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
    except WebSocketDisconnect:
        pass
    _record(f"ws-big closed {websocket.client_state.name}")


async def big_openapi(request: Request) -> Response:
    """A chunked /openapi.json of `size` bytes: too big to be rewritten by the gateway."""
    size = int(request.query_params.get("size", "100"))
    chunk = b" " * (1024 * 1024)

    async def stream():
        yield b'{"openapi": "3.1.0", "paths": {}, "pad": "'
        left = size
        while left > 0:
            yield chunk[: min(left, len(chunk))]
            left -= len(chunk)
        yield b'"}'

    return StreamingResponse(stream(), media_type="application/json")


app = Starlette(
    routes=[
        Route("/echo", echo, methods=["GET", "POST", "PUT", "DELETE", "HEAD"]),
        Route("/raw/{rest:path}", echo),
        Route("/cookies", cookies),
        Route("/events", events),
        Route("/download", download),
        Route("/upload", upload, methods=["POST"]),
        Route("/slow", slow),
        Route("/slow-stream", slow_stream),
        Route("/absolute-redirect", absolute_redirect),
        Route("/items/", items),
        Route("/openapi.json", big_openapi),
        WebSocketRoute("/ws", ws_echo),
        WebSocketRoute("/ws-scope", ws_scope),
        WebSocketRoute("/ws-headers", ws_headers),
        WebSocketRoute("/ws-big", ws_big),
    ]
)


async def dies_mid_body(scope, receive, send):
    """Sends half a body, then the worker dies: a truncated response."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000000")]})
    await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
    await asyncio.sleep(0.2)
    os._exit(1)
