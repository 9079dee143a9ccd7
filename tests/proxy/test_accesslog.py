"""The proxy's access line: fields, Apache's combined layout, and what a client cannot smuggle into either."""

from __future__ import annotations

import json

import pytest

from qkhyper.jsonlog import dumps
from qkhyper.proxy.accesslog import access_fields, access_message, combined_line
from tests.proxy.harness import http_scope, ws_scope

NOW = 1_795_776_060.9  # 27/Nov/2026:10:41:00 UTC


def test_fields() -> None:
    scope = http_scope("/up/items", method="PUT")
    assert access_fields(scope, 201, "/up", ("up.test", 9000), 250.04) == {
        "client": "192.0.2.7",
        "method": "PUT",
        "path": "/up/items",
        "status": 201,
        "bytes": 0,
        "route": "/up",
        "upstream": "up.test:9000",
        "duration_ms": 250.0,
        "request_id": None,  # request IDs off
    }
    assert access_fields(scope, 201, "/up", None, 1.0, b"req-1")["request_id"] == "req-1"
    assert access_fields(scope, 201, "/up", None, 1.0, None, 7)["bytes"] == 7
    websocket = ws_scope("/up/ws")
    del websocket["method"]  # a WebSocket scope has none: its handshake is a GET
    assert access_fields(websocket, 101, "/up", None, 1.0)["method"] == "GET"
    no_target = access_fields({**scope, "client": None}, 502, "fallback", None, 0.0)
    assert no_target["upstream"] is None and no_target["client"] == "-"


@pytest.mark.parametrize(
    ("headers", "raw_path", "expected"),
    [
        (
            [],
            b"/up/items",
            '192.0.2.7 - - [27/Nov/2026:10:41:00 +0000] "PUT /up/items HTTP/1.1" 201 - "-" "-"'
            " /up up.test:9000 250.0ms -",
        ),
        (
            [(b"referer", b"https://app.example/"), (b"user-agent", b"curl/8.5.0")],
            b"/up/items",
            '192.0.2.7 - - [27/Nov/2026:10:41:00 +0000] "PUT /up/items HTTP/1.1" 201 - "https://app.example/"'
            ' "curl/8.5.0" /up up.test:9000 250.0ms -',
        ),
        # A client's quotes, line breaks and bytes cannot end a field or start a line of their own.
        (
            [(b"user-agent", b'x" 200 "evil'), (b"referer", b"\xff\\")],
            b'/up/a"b%0a\nc',
            '192.0.2.7 - - [27/Nov/2026:10:41:00 +0000] "PUT /up/a\\x22b%0a\\nc HTTP/1.1" 201 - "\\xff\\\\"'
            ' "x\\x22 200 \\x22evil" /up up.test:9000 250.0ms -',
        ),
    ],
)
def test_combined_line(headers: list[tuple[bytes, bytes]], raw_path: bytes, expected: str) -> None:
    scope = http_scope("/up/items", method="PUT", headers=headers, raw_path=raw_path)
    fields = access_fields(scope, 201, "/up", ("up.test", 9000), 250.0)
    line = combined_line(scope, fields, NOW)
    assert line == expected
    assert "\n" not in line and line.isascii()


def test_combined_size_is_the_bytes_sent_or_a_dash() -> None:
    scope = http_scope("/up/items")
    sized = combined_line(scope, access_fields(scope, 200, "/up", None, 1.0, b"r", 1234), NOW)
    assert '"GET /up/items HTTP/1.1" 200 1234 "-" "-" /up - 1.0ms r' in sized
    empty = combined_line(scope, access_fields(scope, 204, "/up", None, 1.0, b"r", 0), NOW)
    assert '"GET /up/items HTTP/1.1" 204 - "-" "-" /up - 1.0ms r' in empty  # Apache's %b


def test_message_by_access_log_format() -> None:
    scope = http_scope("/up/a\nb")
    fields = access_fields(scope, 200, "/up", None, 1.0)
    assert access_message(scope, fields, "json", NOW) == "GET /up/a\\nb 200"
    assert access_message(scope, fields, "combined", NOW).endswith(
        '"GET /up/a\\nb HTTP/1.1" 200 - "-" "-" /up - 1.0ms -'
    )
    assert json.loads(dumps(fields))["path"] == "/up/a\\nb"  # log_target's escaping, then JSON's
