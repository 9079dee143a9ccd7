"""What the proxy core counts, in-process on the scripted backend and MockClock (tests/proxy/harness.py)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

from qkhyper.config.model import ProxySettings
from qkhyper.metrics import catalog
from qkhyper.metrics.recorder import ProxyMetrics, Recorder
from qkhyper.proxy.core import ProxyCore
from qkhyper.proxy.mock import HANG, MockBackend, MockStream
from tests.proxy.harness import Client, assert_no_leak, call, chunked, http_scope, response, ws_accept, ws_scope

pytestmark = pytest.mark.anyio

SSE = [("Content-Type", "text/event-stream")]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


def metered(streams: list[object]) -> tuple[ProxyCore, MockBackend, Recorder]:
    recorder = Recorder()
    backend = MockBackend(streams)  # type: ignore[arg-type]
    core = ProxyCore(ProxySettings(), backend=backend, clock=trio.current_time, metrics=ProxyMetrics(recorder))
    return core, backend, recorder


def gauges(recorder: Recorder) -> dict[tuple[str, ...], float]:
    return {tuple([name, *labels]): value for name, labels, value in recorder.snapshot()["g"]}


def counters(recorder: Recorder) -> dict[tuple[str, ...], float]:
    return {tuple([name, *labels]): value for name, labels, value in recorder.snapshot()["c"]}


async def test_requests_latency_and_a_reused_connection() -> None:
    stream = MockStream([response(), response(404)])  # two answers on one keep-alive connection
    core, backend, recorder = metered([stream])
    for _ in range(2):
        await call(core, http_scope(), Client())
    c = counters(recorder)
    assert c[(catalog.GATEWAY_REQUESTS, "/up", "GET", "2xx")] == 1
    assert c[(catalog.GATEWAY_REQUESTS, "/up", "GET", "4xx")] == 1
    assert (c[(catalog.GATEWAY_POOL_OPENED,)], c[(catalog.GATEWAY_POOL_REUSED,)]) == (1, 1)
    assert gauges(recorder) == {(catalog.GATEWAY_POOL, "idle"): 1, (catalog.GATEWAY_POOL, "in_use"): 0}
    assert sum(recorder.histograms[(catalog.GATEWAY_DURATION, "/up")][:-1]) == 2
    assert_no_leak(core, backend)


async def test_a_refused_connection_is_a_failure_by_reason() -> None:
    core, _backend, recorder = metered([ConnectionRefusedError(111, "refused")])
    client = Client()
    await call(core, http_scope(), client)
    assert client.status == 502
    c = counters(recorder)
    assert c[(catalog.GATEWAY_FAILURES, "/up", "connect_failed")] == 1
    assert c[(catalog.GATEWAY_REQUESTS, "/up", "GET", "5xx")] == 1


async def test_an_event_stream_is_open_while_it_lasts_and_holds_its_connection() -> None:
    stream = MockStream([chunked(b"data: 1\n\n", headers=SSE)[:-5], HANG])
    core, backend, recorder = metered([stream])
    client = Client()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, core, http_scope(), client)
        await client.received.wait()
        await trio.testing.wait_all_tasks_blocked()
        g = gauges(recorder)
        assert g[(catalog.GATEWAY_STREAMS, "sse")] == 1 and g[(catalog.GATEWAY_POOL, "in_use")] == 1
        client.leave.set()
    g = gauges(recorder)
    assert g[(catalog.GATEWAY_STREAMS, "sse")] == 0 and g[(catalog.GATEWAY_POOL, "in_use")] == 0
    assert_no_leak(core, backend)


async def test_a_websocket_is_open_while_it_lasts_and_its_connection_is_counted_closed() -> None:
    stream = MockStream([lambda written: ws_accept(written), HANG])
    core, _backend, recorder = metered([stream])
    leave = trio.Event()

    class Session(Client):
        async def receive(self) -> dict[str, Any]:
            if self.messages:
                return self.messages.pop(0)
            await leave.wait()
            return {"type": "websocket.disconnect", "code": 1000}

    client = Session([{"type": "websocket.connect"}])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, core, ws_scope(), client)
        await client.received.wait()
        await trio.testing.wait_all_tasks_blocked()
        g = gauges(recorder)
        assert g[(catalog.GATEWAY_STREAMS, "websocket")] == 1 and g[(catalog.GATEWAY_POOL, "in_use")] == 1
        leave.set()
    g = gauges(recorder)
    assert g[(catalog.GATEWAY_STREAMS, "websocket")] == 0 and g[(catalog.GATEWAY_POOL, "in_use")] == 0
    assert stream.closed
