"""https:// upstreams for real: an upstream served with a trustme certificate, the gateway and static in front."""

from __future__ import annotations

from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.certs import Certs, make_certs
from tests.conftest import Qkhyper, backend_env, free_port, get, run_cli, write_config

# The upstream believes no X-Forwarded-* header, so its app sees the Host the gateway sent.
TLS_KEYS = 'certfile = "tls/server.pem"\nkeyfile = "tls/server.key"\nforwarded_allow_ips = []'


@pytest.fixture
def certs(project: Path) -> Certs:
    return make_certs(project / "tls")


def tls_upstream(project: Path, run_qkhyper: type[Qkhyper]) -> int:
    """`qkhyper serve` of the test upstream over TLS (certificate for localhost and 127.0.0.1); its port."""
    port = free_port()
    config = write_config(project, [{"name": "up", "app": "apps.upstream:app", "port": port}], qkhyper=TLS_KEYS)
    run_qkhyper(["serve", "--config", str(config)], project).wait_ready()
    return port


def gateway_config(project: Path, text: str) -> Path:
    """A gateway config of its own folder (no apps: every route comes from --upstream)."""
    folder = project / "gw"
    folder.mkdir(exist_ok=True)
    path = folder / "hypercorn.toml"
    path.write_text('[qkhyper]\nhost = "127.0.0.1"\n' + text)
    return path


@pytest.mark.parametrize("backend", ["hypercorn", "hypercorn-trio", "uvicorn"])
def test_gateway_to_https_upstreams(project: Path, run_qkhyper: type[Qkhyper], certs: Certs, backend: str) -> None:
    up = tls_upstream(project, run_qkhyper)
    config = gateway_config(
        project,
        '[qkhyper.gateway.upstreams."/users"]\nca_certs = "../tls/ca.pem"\n'
        '[qkhyper.gateway.upstreams."/wsup"]\nca_certs = "../tls/ca.pem"\n'
        '[qkhyper.gateway.upstreams."/mismatch"]\nca_certs = "../tls/ca.pem"\n'
        '[qkhyper.gateway.upstreams."/insecure"]\ntls_verify = false\n',
    )
    port = free_port()
    upstreams = [
        f"users=https://localhost:{up}/raw",  # trusted by ca_certs, with a base path
        f"untrusted=https://localhost:{up}/raw",  # the system's CAs do not know the trustme CA
        f"insecure=https://127.0.0.1:{up}/raw",  # tls_verify = false
        f"wsup=https://localhost:{up}",
        f"mismatch=https://127.1:{up}",  # 127.0.0.1 by another name, which the certificate does not have
    ]
    flags = [arg for text in upstreams for arg in ("--upstream", text)]
    args = ["gateway", "--config", str(config), "--port", str(port), *backend_env(backend)[0], *flags]
    gateway = run_qkhyper(args, project)
    gateway.wait_ready()
    gateway.wait_for(rf"route /users -> https://localhost:{up}/raw")
    base = f"http://127.0.0.1:{port}"

    for _ in range(2):  # the second on a pooled TLS connection
        ok = get(f"{base}/users/items?q=1")
        assert ok.status_code == 200, ok.text
        seen = ok.json()
        assert (seen["route"], seen["query"]) == ("/raw/items", "q=1")
        headers = dict(seen["headers"])
        assert headers["host"] == f"localhost:{up}"  # rewrite_host: on for https:// targets
        assert headers["x-forwarded-host"] == f"127.0.0.1:{port}"

    refused = get(f"{base}/untrusted/items")
    assert refused.status_code == 502
    body = refused.json()
    assert (body["error"], body["reason"]) == ("bad gateway", "upstream TLS handshake failed")
    assert body["detail"].startswith("upstream TLS: certificate verify failed: unable to get local issuer certificate")
    gateway.wait_for(rf"/untrusted: TLS handshake with localhost:{up} failed: certificate verify failed")

    mismatch = get(f"{base}/mismatch/x")
    assert mismatch.status_code == 502
    assert mismatch.json()["detail"] == (
        "upstream TLS: certificate verify failed: Hostname mismatch, certificate is not valid for '127.1'."
    )

    insecure = get(f"{base}/insecure/x")
    assert insecure.status_code == 200 and insecure.json()["route"] == "/raw/x"

    with connect(f"ws://127.0.0.1:{port}/wsup/ws", open_timeout=15) as ws:  # wss:// to the upstream
        ws.send("over tls")
        assert ws.recv(timeout=15) == "over tls"


def test_gateway_routes_to_apps_served_with_tls(project: Path, run_qkhyper: type[Qkhyper], certs: Certs) -> None:
    """[qkhyper] certfile: the app's route goes over https, trusting the app's own certificate (a leaf, no CA)."""
    tls_upstream(project, run_qkhyper)
    port = free_port()
    gateway = run_qkhyper(["gateway", "--config", str(project / "hypercorn.toml"), "--port", str(port)], project)
    gateway.wait_ready()
    gateway.wait_for(r"route /up -> https://127.0.0.1:\d+$")
    seen = get(f"http://127.0.0.1:{port}/up/echo").json()
    assert seen["route"] == "/echo"
    assert dict(seen["headers"])["host"] == f"127.0.0.1:{port}"  # the client's Host is kept for the config's apps


def test_static_api_target_over_https(project: Path, run_qkhyper: type[Qkhyper], certs: Certs) -> None:
    up = tls_upstream(project, run_qkhyper)
    config = gateway_config(project, '[qkhyper.static]\nroot = "site"\napi_ca_certs = "../tls/ca.pem"\n')
    (config.parent / "site").mkdir()
    port = free_port()
    args = ["static", "--config", str(config), "--port", str(port), "--api-target", f"https://localhost:{up}/raw"]
    run_qkhyper(args, project).wait_ready()
    seen = get(f"http://127.0.0.1:{port}/api/echo?x=1").json()
    assert (seen["route"], seen["query"]) == ("/raw/echo", "x=1")
    assert dict(seen["headers"])["host"] == f"localhost:{up}"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            '[qkhyper.gateway.upstreams."/users"]\nca_certs = "missing.pem"\n',
            "qkhyper: error: [qkhyper.gateway].upstreams '/users'.ca_certs: {gw}/missing.pem does not exist",
        ),
        (
            '[qkhyper.gateway.upstreams."/users"]\ntls_verify = false\n',
            "qkhyper: error: [qkhyper.gateway].upstreams '/users': tls_verify and ca_certs apply to https:// targets, "
            "and the route goes to 127.0.0.1:9",
        ),
    ],
)
def test_tls_mistakes_exit_2_with_one_line(project: Path, table: str, message: str) -> None:
    config = gateway_config(project, table)
    result = run_cli(["gateway", "--config", str(config), "--upstream", "users=127.0.0.1:9"], project, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [message.format(gw=config.parent)]


def test_bad_upstream_port_exit_2_names_it(project: Path) -> None:
    config = gateway_config(project, "")
    result = run_cli(["gateway", "--config", str(config), "--upstream", "probe:127.0.0.1:99999"], project, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "qkhyper: error: --upstream 'probe:127.0.0.1:99999': '127.0.0.1:99999': port 99999 is outside 1-65535"
    ]
