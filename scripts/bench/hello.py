"""The benchmark app: the smallest FastAPI endpoint, so the server dominates the cost."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def hello() -> dict[str, str]:
    return {"hello": "world"}
