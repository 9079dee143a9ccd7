"""`qkhyper serve` with `[qkhyper]` certfile/keyfile: real workers on 127.0.0.1, both backends."""

from __future__ import annotations

import signal
import socket
import ssl
from pathlib import Path

import httpx
import psutil
import pytest

from tests.certs import PASSWORD, Certs, make_certs
from tests.conftest import Qkhyper, free_port, write_config

BACKENDS = ["hypercorn", "uvicorn"]


@pytest.fixture
def certs(project: Path) -> Certs:
    return make_certs(project / "tls")


def serve(
    run_qkhyper: type[Qkhyper], project: Path, backend: str, app: str, tls: str, top: str = ""
) -> tuple[Qkhyper, int]:
    port = free_port()
    qkhyper = f'backend = "{backend}"\n{tls}'
    config = write_config(project, [{"name": "users", "app": app, "port": port}], top=top, qkhyper=qkhyper)
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    return server, port


TLS = 'certfile = "tls/server.pem"\nkeyfile = "tls/server.key"\n'


@pytest.mark.parametrize("backend", BACKENDS)
def test_app_over_https_with_the_ready_table_saying_so(
    project: Path, run_qkhyper: type[Qkhyper], certs: Certs, backend: str
) -> None:
    server, port = serve(run_qkhyper, project, backend, "apps.probe:app", TLS)
    server.wait_for(rf"\| users\s+/users\s+https://127.0.0.1:{port}\s", timeout=5)  # the ready table
    with httpx.Client(verify=certs.client_context(), http2=True, timeout=30) as client:
        response = client.get(f"https://127.0.0.1:{port}/scope")
    assert response.status_code == 200
    assert response.json()["scheme"] == "https"
    assert response.json()["url"] == f"https://127.0.0.1:{port}/scope"
    assert response.http_version == ("HTTP/2" if backend == "hypercorn" else "HTTP/1.1")
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port is no request
        httpx.get(f"http://127.0.0.1:{port}/scope", timeout=10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ca_certs_requires_a_client_certificate(
    project: Path, run_qkhyper: type[Qkhyper], certs: Certs, backend: str
) -> None:
    _, port = serve(run_qkhyper, project, backend, "apps.probe:app", TLS + 'ca_certs = "tls/ca.pem"\n')
    url = f"https://127.0.0.1:{port}/scope"
    with httpx.Client(verify=certs.client_context(with_client_cert=True), timeout=30) as client:
        assert client.get(url).status_code == 200
    # TLS 1.3 reports the refused client certificate after the handshake, on the first read.
    with pytest.raises((httpx.HTTPError, ssl.SSLError)):
        with httpx.Client(verify=certs.client_context(), timeout=10) as client:
            client.get(url)


@pytest.mark.parametrize("backend", BACKENDS)
def test_encrypted_key_password_reaches_the_server_but_not_argv_or_the_app(
    project: Path, run_qkhyper: type[Qkhyper], certs: Certs, backend: str
) -> None:
    tls = f'certfile = "tls/server.pem"\nkeyfile = "tls/server-encrypted.key"\nkeyfile_password = "{PASSWORD}"\n'
    server, port = serve(run_qkhyper, project, backend, "apps.envprobe:app", tls)
    with httpx.Client(verify=certs.client_context(), timeout=30) as client:
        seen = client.get(f"https://127.0.0.1:{port}/env").json()
    (pid,) = server.pids("users")
    worker = psutil.Process(pid)
    assert PASSWORD not in " ".join(seen["argv"] + worker.cmdline())
    assert seen["private"] == []  # the worker took it before the app was imported
    # /proc/PID/environ is no witness either way: setproctitle reuses that memory for the title.


def served_certificate(port: int, certs: Certs) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
        with certs.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


@pytest.mark.parametrize("backend", BACKENDS)
def test_sighup_serves_renewed_certificates_and_keeps_the_old_worker_when_they_do_not_load(
    project: Path, run_qkhyper: type[Qkhyper], certs: Certs, backend: str
) -> None:
    server, port = serve(run_qkhyper, project, backend, "apps.probe:app", TLS)
    (old,) = server.pids("users")
    first = served_certificate(port, certs)
    # A renewal gone wrong: the key of another certificate. The replacement must fail before it is ready.
    certs.key.write_bytes(certs.other_key.read_bytes())
    start = len(server.lines)
    server.signal(signal.SIGHUP)
    server.wait_for(
        rf"users: rolling restart failed, keeping worker {old}: .*qkhyper.keyfile {certs.key} is not the key of",
        start=start,
    )
    assert served_certificate(port, certs) == first
    # A good renewal: a new certificate and its key, read by the next roll.
    renewed = certs.ca.issue_cert("127.0.0.1", "localhost")
    certs.cert.write_bytes(b"".join(blob.bytes() for blob in renewed.cert_chain_pems))
    certs.key.write_bytes(renewed.private_key_pem.bytes())
    start = len(server.lines)
    server.signal(signal.SIGHUP)
    server.wait_for(rf"worker {old} exited", start=start)  # the old worker drained: only the new one accepts
    assert served_certificate(port, certs) == ssl.PEM_cert_to_DER_cert(renewed.cert_chain_pems[0].bytes().decode())
