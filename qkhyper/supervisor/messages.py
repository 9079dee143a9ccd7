"""What a worker tells its supervisor over its report pipe: one JSON object a line.

    {"ready": 4121}        every app's lifespan startup finished (once)
    {"error": "app ..."}   the start failed, after the apps that did start were shut down (once)
    {"beat": 1000}         from the worker's event loop: alive, and 1000 requests served so far
    {"beat": 1000, "metrics": {...}}   the same, with its counters (metrics/recorder.py) when metrics are on

A beat is sent every `beat_interval` seconds, and at once when the count
reaches the worker's `request_limit`; never once per request, which would cost
a system call per request. Both ends import this module, so the format is
written in one place.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass

# The worker dumps every thread's stack to stderr on this signal (faulthandler,
# which runs in C and so answers while the event loop is blocked).
STACK_SIGNAL = signal.SIGUSR1


@dataclass(frozen=True, slots=True)
class Ready:
    pid: int


@dataclass(frozen=True, slots=True)
class Failed:
    error: str


@dataclass(frozen=True, slots=True)
class Beat:
    requests: int
    metrics: dict[str, object] | None = None  # a recorder snapshot; the supervisor's store checks it


Message = Ready | Failed | Beat


def encode(message: Message) -> bytes:
    if isinstance(message, Ready):
        body: dict[str, object] = {"ready": message.pid}
    elif isinstance(message, Failed):
        body = {"error": message.error}
    else:
        body = {"beat": message.requests}
        if message.metrics is not None:
            body["metrics"] = message.metrics
    return json.dumps(body).encode() + b"\n"


def decode(line: bytes) -> Message | None:
    """The message on one line; None for anything else (a worker never sends it, so it is ignored)."""
    try:
        body = json.loads(line)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("ready"), int):
        return Ready(body["ready"])
    if "error" in body:
        return Failed(str(body["error"]))
    if isinstance(body.get("beat"), int):
        metrics = body.get("metrics")
        return Beat(body["beat"], metrics if isinstance(metrics, dict) else None)
    return None
