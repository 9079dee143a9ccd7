"""Where a worker imports from (supervisor/process.py BOOTSTRAP): the worker's PYTHONPATH, then the supervisor's path.

The zipapp side (the supervisor's path reaching the worker) is
tests/packaging/test_pyz.py; this is the other half: an app's own
`PYTHONPATH` still comes first, ahead of site-packages, as with `python -m`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Qkhyper, free_port, get

# Reports which `trustme` it imported: the installed one, or the one in the app's PYTHONPATH.
APP = """
import trustme


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": trustme.__file__.encode()})
"""


def test_an_apps_pythonpath_comes_before_site_packages(tmp_path: Path, run_qkhyper: type[Qkhyper]) -> None:
    pytest.importorskip("trustme")  # the installed module the app's folder shadows
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "probe_app.py").write_text(APP)
    (elsewhere / "trustme.py").write_text("")
    project = tmp_path / "project"
    project.mkdir()
    port = free_port()
    config = project / "hypercorn.toml"
    config.write_text(
        '[qkhyper]\nhost = "127.0.0.1"\n\n[[qkhyper.apps]]\nname = "probe"\napp = "probe_app:app"\n'
        f'port = {port}\nenv = {{ PYTHONPATH = "{elsewhere}" }}\n'
    )
    server = run_qkhyper(["serve", "--config", str(config)], project)
    server.wait_ready()
    assert get(f"http://127.0.0.1:{port}/").text == str(elsewhere / "trustme.py")
