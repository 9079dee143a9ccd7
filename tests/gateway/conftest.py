"""A running stack for gateway tests: `qkhyper serve` for the upstreams, then `qkhyper gateway`."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Qkhyper, clean_env, free_port, write_config


@dataclass
class Stack:
    url: str
    port: int
    upstream_port: int
    serve: Qkhyper | None
    gateway: Qkhyper
    config: Path


StackFactory = Callable[..., Stack]


@pytest.fixture
def stack(project: Path, run_qkhyper: type[Qkhyper]) -> StackFactory:
    def start(
        gateway_args: tuple[str, ...] = (),
        *,
        gateway_table: str = "",
        top: str = "",
        qkhyper: str = "",
        apps: list[dict[str, object]] | None = None,
        serve: bool = True,
        env: dict[str, str] | None = None,
    ) -> Stack:
        upstream_port = free_port()
        apps = apps if apps is not None else [{"name": "up", "app": "apps.upstream:app", "port": upstream_port}]
        config = write_config(project, apps, top=top, qkhyper=qkhyper)
        if gateway_table:
            config.write_text(config.read_text() + "\n[qkhyper.gateway]\n" + gateway_table + "\n")
        server = None
        if serve:
            server = run_qkhyper(["serve", "--config", str(config)], project, clean_env(**(env or {})))
            server.wait_ready()
        port = free_port()
        gateway = run_qkhyper(["gateway", "--config", str(config), "--port", str(port), *gateway_args], project)
        gateway.wait_ready()
        return Stack(f"http://127.0.0.1:{port}", port, upstream_port, server, gateway, config)

    return start


def raw_request(port: int, data: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (httpx would normalise them) and return status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            response = b"".join(chunks)
            head, _, body = response.partition(b"\r\n\r\n")
            if b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body
