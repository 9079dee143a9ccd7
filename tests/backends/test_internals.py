"""Guards for every place qkhyper reaches into Hypercorn's or uvicorn's internals.

Each test fails with the dependency's name and installed version and what
moved, so an upgrade that breaks a patch is caught here, in seconds, rather
than by a worker that quietly serves without it (the patches fail soft at run
time, with a warning). Run this file first after upgrading hypercorn, uvicorn,
httptools or h11 (README: "Upgrading dependencies").
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import h11
import hypercorn.asyncio.run
import hypercorn.protocol
import hypercorn.trio.run
import pytest
import uvicorn
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H2CProtocolRequiredError, H2ProtocolAssumedError, H11Protocol
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.http.h11_impl import H11Protocol as UvicornH11
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from wsproto.events import CloseConnection

from qkhyper.backends import heads, hypercorn_h2, hypercorn_h11, hypercorn_ws, uvicorn_h11, uvicorn_httptools
from qkhyper.backends.guards import Overrides, mismatches
from qkhyper.backends.hypercorn import AsyncioAlarm
from qkhyper.backends.hypercorn_h11 import EdgeH11Protocol, install
from qkhyper.backends.uvicorn import _Server, http_protocol
from qkhyper.backends.uvicorn_h11 import EdgeH11Protocol as EdgeUvicornH11
from qkhyper.backends.uvicorn_httptools import EdgeHttpToolsProtocol
from qkhyper.config.model import EdgeLimits
from tests.backends.harness import echo, hypercorn_exchange, statuses, uvicorn_exchange, uvicorn_protocol

SMALL = EdgeLimits(max_header_size=1024, header_timeout=0.05)


def moved(dist: str, what: str) -> str:
    return f"{dist} {version(dist)}: {what}; a qkhyper patch no longer applies (see README, Upgrading dependencies)"


def params(func: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(func).parameters)


def expect_params(dist: str, owner: type, name: str, expected: list[str]) -> None:
    expect_overrides(dist, owner, {name: expected})


def expect_overrides(dist: str, owner: type, expected: Overrides) -> None:
    """The same check the patch makes at run time before it applies (qkhyper.backends.guards)."""
    problems = mismatches(owner, expected)
    assert not problems, moved(dist, "; ".join(problems))


# Hypercorn: WorkerContext replaced (ACCEPT_GRACE, backends/hypercorn.py)


@pytest.mark.parametrize("module", [hypercorn.asyncio.run, hypercorn.trio.run], ids=["asyncio", "trio"])
def test_hypercorn_worker_context_is_looked_up_at_serve_time(module: Any) -> None:
    context = getattr(module, "WorkerContext", None)
    assert context is not None, moved("hypercorn", f"{module.__name__}.WorkerContext is gone")
    assert params(context.__init__) == ["self", "max_requests"], moved("hypercorn", "WorkerContext(max_requests)")
    assert "WorkerContext(" in inspect.getsource(module), moved(
        "hypercorn", f"{module.__name__} builds no WorkerContext"
    )
    assert hasattr(context(None), "terminated"), moved("hypercorn", "WorkerContext().terminated is gone")


def test_hypercorn_asyncio_event_wrapper_keeps_its_event() -> None:
    async def check() -> None:
        terminated = hypercorn.asyncio.run.WorkerContext(None).terminated
        assert isinstance(getattr(terminated, "_event", None), asyncio.Event), moved(
            "hypercorn", "asyncio EventWrapper no longer wraps an asyncio.Event as _event"
        )

    asyncio.run(check())


# Hypercorn: EdgeH11Protocol (backends/hypercorn_h11.py)


def test_hypercorn_builds_its_http11_protocol_from_the_module_global(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hypercorn.protocol, "H11Protocol", hypercorn.protocol.H11Protocol)  # undone after the test
    install(EdgeLimits(), AsyncioAlarm)

    async def build() -> Any:
        from hypercorn.asyncio.task_group import TaskGroup
        from hypercorn.asyncio.worker_context import WorkerContext

        async def send(event: Event) -> None:
            pass

        async with TaskGroup(asyncio.get_running_loop()) as group:
            wrapper = hypercorn.protocol.ProtocolWrapper(
                echo,
                Config(),
                WorkerContext(None),
                group,
                {},
                False,
                None,
                None,
                send,
                "http/1.1",  # type: ignore[arg-type]
            )
            return wrapper.protocol

    assert isinstance(asyncio.run(build()), EdgeH11Protocol), moved(
        "hypercorn", "ProtocolWrapper no longer builds hypercorn.protocol.H11Protocol"
    )


def test_hypercorn_builds_its_http2_protocol_from_the_module_global(monkeypatch: pytest.MonkeyPatch) -> None:
    """hypercorn_h2: ProtocolWrapper builds the global H2Protocol for ALPN "h2", whose decoder then has the limit."""
    monkeypatch.setattr(hypercorn.protocol, "H2Protocol", hypercorn.protocol.H2Protocol)  # undone after the test
    expect_overrides("hypercorn", H2Protocol, hypercorn_h2.OVERRIDES)
    hypercorn_h2.install()
    config = Config()
    config.h2_max_header_list_size = 200_000

    async def build() -> Any:
        from hypercorn.asyncio.task_group import TaskGroup
        from hypercorn.asyncio.worker_context import WorkerContext

        async def send(event: Event) -> None:
            pass

        async with TaskGroup(asyncio.get_running_loop()) as group:
            wrapper = hypercorn.protocol.ProtocolWrapper(
                echo,
                config,
                WorkerContext(None),
                group,
                {},
                True,
                None,
                None,
                send,
                "h2",  # type: ignore[arg-type]
            )
            return wrapper.protocol

    protocol = asyncio.run(build())
    assert isinstance(protocol, hypercorn_h2.EdgeH2Protocol), moved(
        "hypercorn", "ProtocolWrapper no longer builds hypercorn.protocol.H2Protocol"
    )
    assert protocol.connection.decoder.max_header_list_size == 200_000, moved("h2", "H2Connection.decoder moved")


OFFER = [
    (b"connection", b"Upgrade"),
    (b"upgrade", b"websocket"),
    (b"sec-websocket-version", b"13"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits"),
]


def test_hypercorn_websocket_streams_build_the_module_global_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    """hypercorn_ws: WSStream.handle builds `Handshake` by its module-global name, which install replaces."""
    from hypercorn.protocol import ws_stream

    monkeypatch.setattr(ws_stream, "Handshake", ws_stream.Handshake)  # undone after the test
    expect_overrides("hypercorn", ws_stream.Handshake, hypercorn_ws.OVERRIDES)
    assert "Handshake(event.headers" in inspect.getsource(ws_stream.WSStream.handle), moved(
        "hypercorn", "WSStream.handle no longer builds the module's Handshake"
    )
    _, offered, _ = ws_stream.Handshake(OFFER, "1.1").accept(None, [])
    assert b"sec-websocket-extensions" in dict(offered), "Hypercorn no longer negotiates permessage-deflate"
    hypercorn_ws.install()
    assert ws_stream.Handshake is hypercorn_ws.PlainHandshake
    status, headers, connection = ws_stream.Handshake(OFFER, "1.1").accept(None, [])
    assert status == 101 and b"sec-websocket-extensions" not in dict(headers)
    connection.receive_data(b"\xc1\x81\x00\x00\x00\x00a")  # a text frame marked compressed (RSV1)
    closes = [e for e in connection.events() if isinstance(e, CloseConnection)]
    assert closes and closes[0].code == 1002, "a compressed frame is not refused without the extension"


def test_hypercorn_h11_protocol_methods_qkhyper_overrides() -> None:
    expect_overrides("hypercorn", H11Protocol, hypercorn_h11.OVERRIDES)
    assert hasattr(Config, "h11_max_incomplete_size"), moved("hypercorn", "Config.h11_max_incomplete_size is gone")


def test_hypercorn_signals_a_head_by_updated_events() -> None:
    """The header clock runs from initiate() or Updated(idle=True) to Hypercorn's Updated(idle=False).

    Sent to the server, in order: for a head that arrives in pieces, qkhyper's own
    Updated(idle=False) at the first byte (the keep-alive clock stops); Hypercorn's
    at the complete head (for a head in one read, the only one); and Hypercorn's
    Updated(idle=True) when the keep-alive cycle starts again.
    """
    for chunks, expected in [
        ((b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n",), [False, True]),
        ((b"GET /a HTTP/1.1\r\n", b"Host: a\r\n\r\n"), [False, False, True]),
    ]:
        events: list[Event] = []
        output = asyncio.run(hypercorn_exchange(SMALL, *chunks, record=events))
        updates = [event.idle for event in events if isinstance(event, Updated)]
        assert statuses(output) == [200], moved("hypercorn", f"a plain GET was answered {output[:100]!r}")
        assert updates == expected, moved("hypercorn", f"H11Protocol sent Updated idle={updates}")
        assert isinstance(events[-1], Closed), moved("hypercorn", "the header clock did not close an idle connection")


def check_protocol(request: bytes) -> tuple[list[bytes], BaseException | None]:
    """Run Hypercorn's own H11Protocol._check_protocol on a parsed head: what it sent, what it raised."""

    async def check() -> tuple[list[bytes], BaseException | None]:
        sent: list[bytes] = []

        async def send(event: Event) -> None:
            if isinstance(event, RawData):
                sent.append(event.data)

        protocol = H11Protocol.__new__(H11Protocol)
        protocol.connection = h11.Connection(h11.SERVER)
        protocol.connection.receive_data(request)
        event = protocol.connection.next_event()
        assert isinstance(event, h11.Request)
        protocol.config, protocol.send = Config(), send
        try:
            await protocol._check_protocol(event)
        except Exception as exc:
            return sent, exc
        return sent, None

    return asyncio.run(check())


def test_hypercorn_check_protocol_decides_only_h2c_and_prior_knowledge() -> None:
    """qkhyper skips Hypercorn's _check_protocol unless h2c is on or the method is PRI: that must lose nothing."""
    sent, raised = check_protocol(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n")
    assert isinstance(raised, H2CProtocolRequiredError) and sent[0].startswith(b"HTTP/1.1 101 "), moved(
        "hypercorn", "_check_protocol no longer answers Upgrade: h2c with 101"
    )
    assert isinstance(check_protocol(b"PRI * HTTP/2.0\r\n\r\n")[1], H2ProtocolAssumedError), moved(
        "hypercorn", "_check_protocol no longer switches on the HTTP/2 preface"
    )
    for ordinary in [b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"]:
        assert check_protocol(ordinary) == ([], None), moved("hypercorn", "_check_protocol acts on other requests")


@pytest.mark.parametrize("module", ["asyncio", "trio"])
def test_hypercorn_task_groups_spawn(module: str) -> None:
    """The alarms (backends/hypercorn.py) start their ring with TaskGroup.spawn(func)."""
    group = importlib.import_module(f"hypercorn.{module}.task_group").TaskGroup
    expect_params("hypercorn", group, "spawn", ["self", "func", "args"])


def test_h11_headers_raw_items() -> None:
    request = h11.Request(method="GET", target="/", headers=[("Host", "a"), ("X-A", "1")])
    expect_overrides("h11", type(request.headers), heads.HEADERS_USES)
    assert request.headers.raw_items() == [(b"Host", b"a"), (b"X-A", b"1")], moved("h11", "Headers.raw_items()")


# uvicorn: _Server (backends/uvicorn.py)


def test_uvicorn_server_methods_qkhyper_overrides() -> None:
    expect_params("uvicorn", uvicorn.Server, "shutdown", ["self", "sockets"])
    expect_params("uvicorn", uvicorn.Server, "serve", ["self", "sockets"])
    capture = getattr(uvicorn.Server.capture_signals, "__wrapped__", None)
    assert capture is not None and inspect.isgeneratorfunction(capture), moved(
        "uvicorn", "Server.capture_signals is no longer a context manager"
    )
    assert "self.capture_signals()" in inspect.getsource(uvicorn.Server), moved("uvicorn", "capture_signals is unused")
    server = _Server(uvicorn.Config(echo))
    assert server.should_exit is False and server.started is False, moved("uvicorn", "Server.should_exit/started")
    assert "self.servers" in inspect.getsource(uvicorn.Server.startup), moved("uvicorn", "Server.servers is gone")


# uvicorn: the edge protocols (backends/uvicorn_httptools.py, uvicorn_h11.py)


def test_uvicorn_takes_a_protocol_class_as_http() -> None:
    protocol = http_protocol(EdgeLimits())
    config = uvicorn.Config(echo, http=protocol, h11_max_incomplete_event_size=1024)
    config.load()
    assert config.http_protocol_class is protocol, moved("uvicorn", "Config(http=class) is not used as given")
    assert isinstance(protocol, type) and issubclass(protocol, AutoHTTPProtocol), moved(
        "uvicorn", "qkhyper's choice of protocol no longer matches uvicorn's auto"
    )


@pytest.mark.parametrize(
    ("base", "overrides"),
    [(HttpToolsProtocol, uvicorn_httptools.OVERRIDES), (UvicornH11, uvicorn_h11.OVERRIDES)],
    ids=["httptools", "h11"],
)
def test_uvicorn_protocol_methods_qkhyper_overrides(base: type, overrides: Overrides) -> None:
    expect_overrides("uvicorn", base, overrides)


@pytest.mark.parametrize("edge", [EdgeHttpToolsProtocol, EdgeUvicornH11], ids=["httptools", "h11"])
def test_uvicorn_protocol_attributes_qkhyper_uses(edge: type[asyncio.Protocol]) -> None:
    async def connected() -> Any:
        protocol, transport = uvicorn_protocol(edge, EdgeLimits())
        transport.close()
        return protocol

    protocol = asyncio.run(connected())
    for name in ["timeout_keep_alive_task", "timeout_keep_alive", "loop", "transport", "server_state", "cycle"]:
        assert hasattr(protocol, name), moved("uvicorn", f"{type(protocol).__mro__[2].__name__}.{name} is gone")
    if edge is EdgeUvicornH11:
        assert protocol.conn is protocol.limited, moved("uvicorn", "H11Protocol no longer keeps its h11 conn as .conn")


@pytest.mark.parametrize("edge", [EdgeHttpToolsProtocol, EdgeUvicornH11], ids=["httptools", "h11"])
def test_uvicorn_protocols_still_call_every_override(edge: type[asyncio.Protocol]) -> None:
    """One exchange that passes through each override: refusal, head, response, idle clock, 408."""
    refused = asyncio.run(uvicorn_exchange(edge, SMALL, b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"x" * 2000))
    assert statuses(refused) == [431], moved("uvicorn", f"a head over the limit was answered {refused[:80]!r}")
    answered = asyncio.run(uvicorn_exchange(edge, SMALL, b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HT"))
    assert statuses(answered) == [200, 408], moved("uvicorn", f"keep-alive then a partial head gave {answered!r}")
    assert statuses(asyncio.run(uvicorn_exchange(edge, SMALL))) == [], moved("uvicorn", "a silent connection")


def test_h11_connection_methods_qkhyper_overrides() -> None:
    expect_overrides("h11", h11.Connection, heads.CONNECTION_USES)
    error = h11.RemoteProtocolError("x", error_status_hint=431)
    assert error.error_status_hint == 431, moved("h11", "RemoteProtocolError(error_status_hint=...)")


# At run time a patch that no longer fits steps aside with a warning; the server still serves.


def test_moved_uvicorn_internals_leave_uvicorns_own_protocol(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(uvicorn_httptools, "OVERRIDES", {"on_gone": ["self"]})
    assert http_protocol(EdgeLimits()) == "auto"
    assert f"uvicorn {version('uvicorn')} internals changed" in caplog.text
    assert "HttpToolsProtocol.on_gone is gone" in caplog.text


def test_moved_hypercorn_internals_leave_hypercorns_own_protocol(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from qkhyper.backends.hypercorn import _edge_protocol, _patch_safely

    original = hypercorn.protocol.H11Protocol
    monkeypatch.setattr(hypercorn.protocol, "H11Protocol", original)  # undone after the test
    monkeypatch.setattr(hypercorn_h11, "OVERRIDES", {"_gone": ["self"]})
    _patch_safely(lambda: _edge_protocol(EdgeLimits(), "asyncio"), "header timeout and h2c switch")
    assert hypercorn.protocol.H11Protocol is original
    assert f"hypercorn {version('hypercorn')} internals changed" in caplog.text
    assert "H11Protocol._gone is gone" in caplog.text and "serving without the header timeout" in caplog.text
