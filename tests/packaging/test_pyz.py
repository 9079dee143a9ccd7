"""The one-file build: `scripts/build-pyz`, copied to an empty folder, runs `serve`, `gateway` and `static`.

Each variant is built once per session (about 10 s with pip's cache warm). The
folder holds only the zipapp: no config, so the bundled demo is used, and no
PYTHONPATH, so nothing outside the zipapp is importable that a user's machine
would lack. shiv unpacks into a SHIV_ROOT of the test's own, which also shows
where each worker's compiled modules (uvloop, httptools) were loaded from.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Qkhyper, clean_env, free_port, get

REPO = Path(__file__).resolve().parents[2]
VARIANTS = {"hypercorn": "qkhyper.pyz", "uvicorn": "qkhyper-uvicorn.pyz"}

pytest.importorskip("shiv", reason="`shiv` is not installed (pip install -e '.[dev]' brings it)")


@pytest.fixture(scope="session")
def pyz_builds() -> dict[str, Path]:
    """Built zipapps by variant, each made on first use."""
    return {}


@pytest.fixture(params=sorted(VARIANTS))
def pyz(request: pytest.FixtureRequest, pyz_builds: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    variant: str = request.param
    if variant not in pyz_builds:
        output = tmp_path_factory.mktemp("pyz") / VARIANTS[variant]
        flags = ["--uvicorn"] if variant == "uvicorn" else []
        done = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "build-pyz"), "--output", str(output), *flags],
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        pyz_builds[variant] = output
    return pyz_builds[variant]


def loaded_from(pid: int, folder: Path) -> bool:
    """Whether process `pid` has a shared object from under `folder` mapped (a compiled module it imported)."""
    with open(f"/proc/{pid}/maps") as maps:
        return any(str(folder) in line and ".so" in line for line in maps)


def test_demo_through_serve_gateway_and_static(pyz: Path, tmp_path: Path, run_qkhyper: type[Qkhyper]) -> None:
    backend = "uvicorn" if pyz.name == VARIANTS["uvicorn"] else "hypercorn"
    folder = tmp_path / "empty"
    folder.mkdir()
    shutil.copy(pyz, folder)
    shiv_root = tmp_path / "shiv"
    env = clean_env(SHIV_ROOT=str(shiv_root))
    env.pop("PYTHONPATH", None)
    command = [sys.executable, pyz.name]
    app, gateway, static = free_port(), free_port(), free_port()

    def start(*args: str) -> Qkhyper:
        server = run_qkhyper([*args, "--backend", backend], folder, env, command=command)
        server.wait_ready()
        return server

    serve = start("serve", "users", "--port", str(app))
    start("gateway", "--port", str(gateway))  # finds users' port in the port map `serve` wrote here
    start("static", "--port", str(static), "--api-target", f"http://127.0.0.1:{gateway}")

    direct = get(f"http://127.0.0.1:{app}/health")
    assert direct.status_code == 200 and direct.json()["service"] == "users"
    assert get(f"http://127.0.0.1:{gateway}/users/health").json() == direct.json()
    assert get(f"http://127.0.0.1:{static}/api/users/health").json() == direct.json()
    page = get(f"http://127.0.0.1:{static}/")  # the bundled demo's frontend, from inside the zipapp
    assert page.status_code == 200 and 'id="users"' in page.text
    [worker] = serve.pids("users")
    assert loaded_from(worker, shiv_root), "the worker did not import its compiled modules from the zipapp"
    assert sorted(p.name for p in folder.iterdir()) == [".qkhyper", pyz.name]
