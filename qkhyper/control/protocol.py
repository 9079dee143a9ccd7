"""The control protocol: one JSON request line in, JSON answer lines out (sans-io).

A client connects to a supervisor's control socket, writes one request and
reads the answer; the socket is then closed. Requests:

    {"command": "status"}
    {"command": "restart", "apps": ["users"]}
    {"command": "scale", "app": "users", "workers": 3}
    {"command": "reload"}
    {"command": "stop", "now": false}

Every answer is an object with `"ok"`: true and the command's result, or
false and `"error"`, one line a person can read. `stop` answers as soon as
the shutdown began and holds the connection open until the supervisor is
gone, so a client that waits for end of file knows it stopped.

Parsing here has no sockets, so every malformed request is a table row in a
test: a line over `MAX_LINE`, not JSON, not an object, an unknown command,
missing or mistyped fields each raise `BadRequest` with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_LINE = 64 * 1024  # a request is a few dozen bytes; an answer lists a handful of apps
MAX_WORKERS = 64  # `scale`: more workers than this for one app is a typo, not a plan


class BadRequest(Exception):
    """A request line the supervisor does not take; the message says why."""


@dataclass(frozen=True, slots=True)
class Status:
    pass


@dataclass(frozen=True, slots=True)
class Restart:
    apps: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Scale:
    app: str
    workers: int


@dataclass(frozen=True, slots=True)
class Reload:
    pass


@dataclass(frozen=True, slots=True)
class Stop:
    now: bool = False


Request = Status | Restart | Scale | Reload | Stop


def encode_request(request: Request) -> bytes:
    if isinstance(request, Restart):
        body: dict[str, Any] = {"command": "restart", "apps": list(request.apps)}
    elif isinstance(request, Scale):
        body = {"command": "scale", "app": request.app, "workers": request.workers}
    elif isinstance(request, Stop):
        body = {"command": "stop", "now": request.now}
    else:
        body = {"command": "status" if isinstance(request, Status) else "reload"}
    return encode(body)


def decode_request(line: bytes) -> Request:
    """The request on `line` (without its newline).

    Raises:
        BadRequest: naming what is wrong with it.
    """
    if len(line) > MAX_LINE:
        raise BadRequest(f"request longer than {MAX_LINE} bytes")
    try:
        body = json.loads(line)
    except ValueError:
        raise BadRequest("request is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request is not a JSON object")
    command = body.get("command")
    if command == "status":
        return Status()
    if command == "reload":
        return Reload()
    if command == "stop":
        return Stop(_bool(body, "now"))
    if command == "restart":
        apps = body.get("apps")
        if not isinstance(apps, list) or not apps or not all(isinstance(a, str) and a for a in apps):
            raise BadRequest("restart needs `apps`: a list of app names")
        return Restart(tuple(dict.fromkeys(apps)))
    if command == "scale":
        app, workers = body.get("app"), body.get("workers")
        if not isinstance(app, str) or not app:
            raise BadRequest("scale needs `app`: an app name")
        if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS:
            raise BadRequest(f"scale needs `workers`: a number from 1 to {MAX_WORKERS}")
        return Scale(app, workers)
    raise BadRequest(f"unknown command {command!r}; commands: status, restart, scale, reload, stop")


def _bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"`{key}` must be true or false")
    return value


def ok(**result: Any) -> dict[str, Any]:
    return {"ok": True, **result}


def failed(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


def encode(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer, separators=(",", ":")).encode() + b"\n"


def decode_answer(line: bytes) -> dict[str, Any]:
    """An answer line as a dict with `ok`; anything else is treated as a failed answer."""
    try:
        body = json.loads(line)
    except ValueError:
        return failed("the supervisor's answer is not JSON")
    if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
        return failed("the supervisor's answer is not a control answer")
    return body
