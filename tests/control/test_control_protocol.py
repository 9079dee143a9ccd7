"""The control protocol's parsing as a table: every request a supervisor takes, and every one it refuses."""

from __future__ import annotations

import pytest

from qkhyper.control.protocol import (
    MAX_LINE,
    BadRequest,
    Reload,
    Request,
    Restart,
    Scale,
    Status,
    Stop,
    decode_answer,
    decode_request,
    encode_request,
)


@pytest.mark.parametrize(
    ("line", "request_"),
    [
        (b'{"command": "status"}', Status()),
        (b'{"command": "reload", "extra": 1}', Reload()),
        (b'{"command": "stop"}', Stop(False)),
        (b'{"command": "stop", "now": true}', Stop(True)),
        (b'{"command": "restart", "apps": ["users", "orders", "users"]}', Restart(("users", "orders"))),
        (b'{"command": "scale", "app": "users", "workers": 1}', Scale("users", 1)),
        (b'{"command": "scale", "app": "users", "workers": 64}', Scale("users", 64)),
    ],
)
def test_requests_it_takes(line: bytes, request_: Request) -> None:
    assert decode_request(line) == request_
    assert decode_request(encode_request(request_).rstrip(b"\n")) == request_


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "request is not JSON"),
        (b"status", "request is not JSON"),
        (b'["status"]', "request is not a JSON object"),
        (b"{}", "unknown command None; commands: status, restart, scale, reload, stop"),
        (b'{"command": "STATUS"}', "unknown command 'STATUS'"),
        (b'{"command": "stop", "now": "yes"}', "`now` must be true or false"),
        (b'{"command": "restart"}', "restart needs `apps`: a list of app names"),
        (b'{"command": "restart", "apps": []}', "restart needs `apps`"),
        (b'{"command": "restart", "apps": "users"}', "restart needs `apps`"),
        (b'{"command": "restart", "apps": [""]}', "restart needs `apps`"),
        (b'{"command": "restart", "apps": [1]}', "restart needs `apps`"),
        (b'{"command": "scale", "workers": 2}', "scale needs `app`: an app name"),
        (b'{"command": "scale", "app": "users"}', "scale needs `workers`: a number from 1 to 64"),
        (b'{"command": "scale", "app": "users", "workers": 0}', "scale needs `workers`"),
        (b'{"command": "scale", "app": "users", "workers": 65}', "scale needs `workers`"),
        (b'{"command": "scale", "app": "users", "workers": true}', "scale needs `workers`"),
        (b'{"command": "scale", "app": "users", "workers": 2.5}', "scale needs `workers`"),
        (b'{"command": "status", "pad": "' + b"x" * MAX_LINE + b'"}', f"request longer than {MAX_LINE} bytes"),
    ],
)
def test_requests_it_refuses_say_why(line: bytes, reason: str) -> None:
    with pytest.raises(BadRequest) as refused:
        decode_request(line)
    assert str(refused.value).startswith(reason)


@pytest.mark.parametrize(
    ("line", "answer"),
    [
        (b'{"ok": true, "pid": 7}', {"ok": True, "pid": 7}),
        (b'{"ok": false, "error": "no"}', {"ok": False, "error": "no"}),
        (b"<html>", {"ok": False, "error": "the supervisor's answer is not JSON"}),
        (b'{"pid": 7}', {"ok": False, "error": "the supervisor's answer is not a control answer"}),
        (b'{"ok": "yes"}', {"ok": False, "error": "the supervisor's answer is not a control answer"}),
    ],
)
def test_answers_without_ok_are_failures(line: bytes, answer: dict[str, object]) -> None:
    assert decode_answer(line) == answer
