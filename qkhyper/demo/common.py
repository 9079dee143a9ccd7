"""Pieces both demo apps share: a JSON store kept in lifespan state, SSE, WebSocket echo."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse


class Store:
    """An in-memory table; the app's lifespan creates it, so routes fail without lifespan."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = {row["id"]: row for row in rows}
        self._ids = itertools.count(max(self.rows, default=0) + 1)

    def add(self, data: dict[str, Any]) -> dict[str, Any]:
        row = {**data, "id": next(self._ids)}
        self.rows[row["id"]] = row
        return row


def store_lifespan(
    name: str, rows: list[dict[str, Any]]
) -> Callable[[FastAPI], AbstractAsyncContextManager[dict[str, Any]]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {"store": Store(rows), "service": name}

    return lifespan


def crud_router() -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        return {"status": "ok", "service": request.state.service}

    @router.get("/")
    async def list_rows(request: Request) -> list[dict[str, Any]]:
        store: Store = request.state.store
        return list(store.rows.values())

    @router.get("/{row_id}")
    async def get_row(row_id: int, request: Request) -> dict[str, Any]:
        store: Store = request.state.store
        row = store.rows.get(row_id)
        if row is None:
            raise HTTPException(404, f"no item {row_id}")
        return row

    @router.post("/", status_code=201)
    async def create_row(data: dict[str, Any], request: Request) -> dict[str, Any]:
        store: Store = request.state.store
        return store.add(data)

    @router.get("/live/events")
    async def events(request: Request, count: int = 5, interval: float = 0.2) -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            for i in range(count):
                yield f"id: {i}\ndata: {request.state.service} event {i}\n\n".encode()
                await asyncio.sleep(interval)

        return StreamingResponse(stream(), media_type="text/event-stream")

    @router.websocket("/live/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            pass

    return router


def make_app(name: str, rows: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI(title=f"qkhyper demo: {name}", lifespan=store_lifespan(name, rows))
    app.include_router(crud_router())
    return app
