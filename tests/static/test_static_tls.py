"""`qkhyper static` over HTTPS, its keys from the environment (QKHYPER_STATIC_CERTFILE, ...)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.certs import make_certs
from tests.conftest import Qkhyper, clean_env, free_port


@pytest.mark.parametrize(("backend", "version"), [("hypercorn", "HTTP/2"), ("uvicorn", "HTTP/1.1")])
def test_static_over_https(run_qkhyper: type[Qkhyper], tmp_path: Path, backend: str, version: str) -> None:
    certs = make_certs(tmp_path / "tls")
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("<p>secure</p>")
    (root / "app.js").write_text("console.log(1);\n")
    port = free_port()
    env = clean_env(QKHYPER_STATIC_CERTFILE=str(certs.cert), QKHYPER_STATIC_KEYFILE=str(certs.key))
    server = run_qkhyper(
        ["static", "--root", str(root), "--port", str(port), "--backend", backend], cwd=tmp_path, env=env
    )
    server.wait_ready()
    server.wait_for(rf"\| static\s+/\s+https://127.0.0.1:{port}\s")
    with httpx.Client(verify=certs.client_context(), http2=True, timeout=30) as client:
        page = client.get(f"https://127.0.0.1:{port}/", headers={"Accept": "text/html"})
        assert (page.status_code, page.text, page.http_version) == (200, "<p>secure</p>", version)
        fallback = client.get(f"https://127.0.0.1:{port}/users/1", headers={"Accept": "text/html"})
        assert fallback.text == "<p>secure</p>"
        partial = client.get(f"https://127.0.0.1:{port}/app.js", headers={"Range": "bytes=0-6"})
        assert (partial.status_code, partial.content) == (206, b"console")
