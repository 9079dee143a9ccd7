"""The pure pieces of the bench's scale rows (scripts/bench/scale.py, nginx_server.py, the report).

The scripts are not a package: they are loaded from their files, as `python scripts/bench` runs them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench"


def load(name: str, filename: str) -> ModuleType:
    if str(BENCH) not in sys.path:  # __main__.py imports scale.py as the bench run does
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


scale = load("bench_scale", "scale.py")
nginx = load("bench_nginx_server", "nginx_server.py")
bench = load("bench_main", "__main__.py")


def outcome(n: int = 100, **fields: Any) -> Any:
    out = scale.Outcome(n, opened=n, held=n, expected=n * 10, received=n * 10, rss_before_kb=1000)
    out.rss_after_kb = 1000 + 20 * n
    out.latencies_ms = [float(i) for i in range(1, 101)]
    for key, value in fields.items():
        setattr(out, key, value)
    return out


def test_p99_is_the_nearest_rank() -> None:
    assert scale.p99([float(i) for i in range(1, 101)]) == 99.0
    assert scale.p99([float(i) for i in range(1000, 0, -1)]) == 990.0
    assert scale.p99([7.0]) == 7.0
    assert scale.p99([]) is None


def test_rss_per_connection_and_lost() -> None:
    out = outcome(received=990)
    assert out.rss_kb_per_conn == 20.0
    assert out.lost == 10
    assert scale.Outcome(5).rss_kb_per_conn is None


def test_fds_needed_counts_both_legs_of_a_proxied_connection() -> None:
    assert scale.Scale("idle", 10_000, 5).fds_needed() == 10_000 + scale.FD_MARGIN
    assert scale.Scale("ws", 5_000, 15).fds_needed() == 10_000 + scale.FD_MARGIN


def test_result_fields_pass() -> None:
    row = scale.Scale("ws", 100, 15, rss_limit_kb=50)
    fields = scale.result_fields(row, outcome(), outcome(), ["note"])
    assert fields["passed"] is True
    assert fields["qkhyper_lost"] == 0 and fields["qkhyper_connections"] == 100
    assert fields["qkhyper_p99_ms"] == 99.0 and fields["qkhyper_rss_kb_per_conn"] == 20.0
    assert fields["notes"] == "note"


def test_result_fields_say_what_missed() -> None:
    row = scale.Scale("sse", 100, 15, rss_limit_kb=10, p99_limit_ms=50)
    ours = outcome(held=60, received=900)
    ours.error("dropped")
    fields = scale.result_fields(row, ours, outcome(), [])
    assert fields["passed"] is False
    notes = fields["notes"]
    assert "held 60 of 100" in notes and "lost 100 of 1000" in notes
    assert "20.0 KB/conn > 10" in notes and "p99 99.0 ms >= 50" in notes
    assert "qkhyper errors: dropped x1" in notes


def test_ws_frame_is_masked_and_round_trips() -> None:
    frame = scale.ws_frame(b"12 345")
    assert frame[0] == 0x81 and frame[1] == 0x80 | 6
    mask, body = frame[2:6], frame[6:]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(body)) == b"12 345"
    long = scale.ws_frame(b"x" * 300)
    assert long[1] == 0x80 | 126 and int.from_bytes(long[2:4], "big") == 300


def test_ws_frames_takes_complete_frames_only() -> None:
    buf = bytearray(b"\x81\x03abc" + b"\x82\x7e\x01\x00" + b"y" * 256 + b"\x89\x05he")
    assert scale.ws_frames(buf) == [(1, b"abc"), (2, b"y" * 256)]
    assert buf == bytearray(b"\x89\x05he")  # an incomplete ping stays for the next read
    buf += b"llo"
    assert scale.ws_frames(buf) == [(9, b"hello")] and not buf


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


def test_sse_client_counts_events_across_chunk_and_read_boundaries() -> None:
    async def run() -> Any:
        out, live = scale.Outcome(1), [0, 0]
        client = scale.SSEClient(b"GET /sse HTTP/1.1\r\n\r\n", out, live)
        client.connection_made(FakeTransport())
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        event0, event1 = b"data: 0 1.0\n\n", b"data: 1 1.5\n\n"
        body = b"%x\r\n%s\r\n" % (len(event0), event0) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(event1), event1)
        for piece in (head + body[:7], body[7:20], body[20:]):  # split inside a size line and an event
            client.data_received(piece)
        return out, live, client

    out, live, client = asyncio.run(run())
    assert out.received == 2 and not out.errors
    assert live == [0, 1] and client.done.done() and client.transport.closed


def test_nginx_config_unchanged_by_default() -> None:
    text = nginx.render(8080, Path("/state"), upstream="127.0.0.1:9000")
    assert "worker_connections 4096;" in text and "worker_rlimit_nofile" not in text
    assert 'proxy_set_header Connection "";' in text
    assert "Upgrade" not in text and "proxy_buffering" not in text and "keepalive_timeout" not in text


def test_nginx_config_for_websockets_and_sse() -> None:
    text = nginx.render(
        8080,
        Path("/state"),
        upstream="127.0.0.1:9000",
        worker_connections=16384,
        keepalive_timeout=120,
        websocket=True,
        no_buffering=True,
    )
    assert "worker_connections 16384;" in text and "worker_rlimit_nofile " in text
    assert "keepalive_timeout 120s;" in text
    assert "map $http_upgrade $connection_upgrade" in text
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert "proxy_set_header Connection $connection_upgrade;" in text
    assert "proxy_buffering off;" in text


def test_scale_rows_are_selectable_and_reported(capsys: Any, tmp_path: Path) -> None:
    args = bench.parse_args(["--only", "scale-ws", "--scale-factor", "0.1", "--output", str(tmp_path / "r.json")])
    assert [row.name for row in args.rows] == ["scale-ws", "scale-ws-hypercorn"]
    assert args.scale_factor == 0.1
    res = bench.Result("scale-ws", None, "ws")
    for key, value in scale.result_fields(scale.Scale("ws", 100, 15, 50), outcome(), outcome(), ["n"]).items():
        setattr(res, key, value)
    plain = bench.Result("gateway-uvicorn", 2.5, qkhyper_rps=100.0, reference_rps=50.0, ratio=2.0, passed=True)
    bench.print_table([plain, res])
    printed = capsys.readouterr().out
    assert "gateway-uvicorn" in printed and "scale row" in printed
    assert "scale-ws" in printed.split("scale row")[1]
    row = json.loads(json.dumps(asdict(res)))
    assert row["ratio"] is None and row["target"] is None and row["qkhyper_p99_ms"] == 99.0
