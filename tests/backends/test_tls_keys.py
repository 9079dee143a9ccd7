"""qkhyper's TLS keys mean the same to both servers: the contexts each one builds, compared.

Hypercorn builds its context from the `Config` attributes `tls.hypercorn_keys`
sets, uvicorn from the arguments `tls.uvicorn_kwargs` gives; the parent's
check builds a third (`tls.server_context`). All three must ask the same of a
client: verify mode, lowest TLS version, cipher suites.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import pytest
import uvicorn
from hypercorn.config import Config

from qkhyper.backends.base import ServerOptions
from qkhyper.backends.hypercorn import make_config
from qkhyper.backends.serverkeys import hypercorn_mapping, uvicorn_kwargs
from qkhyper.config.model import EdgeLimits
from qkhyper.tls import ServerTls, hypercorn_keys, server_context
from qkhyper.tls import uvicorn_kwargs as tls_kwargs
from tests.certs import PASSWORD, Certs, make_certs


async def app(scope: Any, receive: Any, send: Any) -> None:  # never called
    raise AssertionError


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def hypercorn_context(tls: ServerTls, top: dict[str, Any]) -> ssl.SSLContext:
    config = Config.from_mapping(hypercorn_mapping(top))
    for key, value in hypercorn_keys(tls).items():
        setattr(config, key, value)
    context = config.create_ssl_context()
    assert context is not None
    return context


def uvicorn_context(tls: ServerTls, top: dict[str, Any]) -> ssl.SSLContext:
    config = uvicorn.Config(app, **uvicorn_kwargs(top), **tls_kwargs(tls))
    config.load()
    assert config.ssl is not None
    return config.ssl


def reading(context: ssl.SSLContext) -> tuple[object, ...]:
    return (
        context.verify_mode,
        context.minimum_version,
        sorted(cipher["name"] for cipher in context.get_ciphers()),
        context.options & ssl.OP_NO_COMPRESSION,
    )


def cases(certs: Certs) -> dict[str, tuple[ServerTls, dict[str, Any]]]:
    return {
        "plain key": (ServerTls(str(certs.cert), str(certs.key)), {}),
        "encrypted key": (ServerTls(str(certs.cert), str(certs.encrypted_key), password=PASSWORD), {}),
        "client certificates": (ServerTls(str(certs.cert), str(certs.key), str(certs.ca_pem)), {}),
        "ciphers key": (ServerTls(str(certs.cert), str(certs.key)), {"ciphers": "ECDHE+CHACHA20"}),
    }


@pytest.mark.parametrize("case", ["plain key", "encrypted key", "client certificates", "ciphers key"])
def test_both_servers_build_the_same_context(certs: Certs, case: str) -> None:
    tls, top = cases(certs)[case]
    assert reading(uvicorn_context(tls, top)) == reading(hypercorn_context(tls, top))
    if not top:  # the parent's check builds what the servers build with the default ciphers
        assert reading(server_context(tls, ["h2", "http/1.1"])) == reading(hypercorn_context(tls, top))


def test_ca_certs_means_client_certificates_are_required(certs: Certs) -> None:
    tls = ServerTls(str(certs.cert), str(certs.key), str(certs.ca_pem))
    assert hypercorn_context(tls, {}).verify_mode == ssl.CERT_REQUIRED
    assert uvicorn_context(tls, {}).verify_mode == ssl.CERT_REQUIRED
    without = ServerTls(str(certs.cert), str(certs.key))
    assert hypercorn_context(without, {}).verify_mode == ssl.CERT_NONE


def test_hypercorn_serves_the_inherited_socket_with_tls_and_offers_http2(certs: Certs) -> None:
    """`ssl_enabled` puts the fd:// bind among Hypercorn's secure sockets; ALPN offers h2 (uvicorn has none)."""
    tls = ServerTls(str(certs.cert), str(certs.key))
    config = Config.from_mapping(hypercorn_mapping({}))
    for key, value in hypercorn_keys(tls).items():
        setattr(config, key, value)
    assert config.ssl_enabled and config.alpn_protocols == ["h2", "http/1.1"]


def test_http2_header_limit_follows_max_header_size() -> None:
    """Over TLS Hypercorn speaks HTTP/2, whose own header limit (64 KiB) would close the connection first."""
    with socket.socket() as sock:
        config = make_config(sock, ServerOptions("asyncio", {}, EdgeLimits(max_header_size=200_000, max_headers=10)))
    assert config.h2_max_header_list_size == 200_000 + 32 * 10
