"""The compose export: `docker-compose config` accepts it, and it says what the config says; the Containerfile parses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from qkhyper.export import build
from qkhyper.export.model import Facts


def compose_config(folder: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """docker-compose 1.29 (Debian's docker-compose package: its own Python, no daemon needed)."""
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose; .ci/run does)")
    return subprocess.run([tool, "config", *flags], cwd=folder, capture_output=True, text=True)


def services(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((folder / "compose.yaml").read_text())["services"]
    return data


@pytest.mark.parametrize("config", ["demo", "five"])
def test_compose_file_validates(config: str, request, export) -> None:
    out = export(request.getfixturevalue(config), "compose")
    run = compose_config(out, "-q")
    assert run.returncode == 0, run.stderr


def test_a_broken_compose_file_fails(demo, export) -> None:
    out = export(demo, "compose")
    path = out / "compose.yaml"
    path.write_text(path.read_text().replace("stop_grace_period", "stop_grace"))
    assert compose_config(out, "-q").returncode != 0


def test_services_follow_the_config(five, export) -> None:
    out = export(five, "compose")
    found = services(out)
    assert list(found) == ["users", "orders", "search-v2", "admin-panel", "reports", "gateway", "static"]
    assert {s["stop_grace_period"] for s in found.values()} == {"25s"}  # graceful_timeout 20 + 5
    users = found["users"]
    assert users["command"] == ["serve", "users", "--host", "0.0.0.0", "--port", "8001"]
    assert "/healthz" in users["healthcheck"]["test"][-1] and "9100" in users["healthcheck"]["test"][-1]
    assert users["environment"]["LOG_LEVEL"] == "debug"
    assert users["mem_limit"] == "964m"
    assert {v["target"] for v in users["volumes"]} == {"/app/env/users.env", "/app/shared.env"}
    assert found["gateway"]["ports"] == ["8443:8443"] and "ports" not in users
    assert found["static"]["command"][-2:] == ["--api-target", "https://gateway:8443"]
    assert (out / "secrets/env-users-env-env-file/users.env").read_text() == "DATABASE_URL=\nAPI_KEY=\n"
    # `$` is escaped for Compose, so the app gets the config's value, not an interpolation:
    # unescaped, `$5` is an invalid interpolation that docker-compose refuses.
    assert users["environment"]["GREETING"] == "cost $$5"
    path = out / "compose.yaml"
    path.write_text(path.read_text().replace("$$5", "$5"))
    assert "Invalid interpolation" in compose_config(out, "-q").stderr


def test_demo_healthchecks_are_tcp(demo, export) -> None:
    found = services(export(demo, "compose"))
    assert "create_connection(('127.0.0.1', 8001)" in found["users"]["healthcheck"]["test"][-1]
    assert found["users"]["stop_grace_period"] == "15s"


@pytest.mark.parametrize("pyz", ["", "dist/qkhyper.pyz"])
def test_containerfile_parses(demo, pyz: str) -> None:
    dockerfile = pytest.importorskip("dockerfile", reason="the dockerfile package (buildkit's parser) is a dev extra")
    text = build(demo, "compose", found=Facts(pyz=pyz))["Containerfile"]
    commands = dockerfile.parse_string(text)
    by_name: dict[str, list[tuple[str, ...]]] = {}
    for command in commands:
        by_name.setdefault(command.cmd, []).append(command.value)
    assert by_name["FROM"] == [("python:3.11-slim",)]
    assert by_name["USER"] == [("10001",)]  # numeric: runAsNonRoot can check it
    assert by_name["STOPSIGNAL"] == [("SIGTERM",)]
    entry = by_name["ENTRYPOINT"][0]
    if pyz:
        assert ("dist/qkhyper.pyz", "/opt/qkhyper/qkhyper.pyz") in by_name["COPY"]
        assert entry == ("python3", "/opt/qkhyper/qkhyper.pyz")
    else:
        assert entry == ("qkhyper",)
        assert any("pip install" in run[0] and "qkhyper==" in run[0] for run in by_name["RUN"])


def test_secret_files_stay_out_of_the_image(five) -> None:
    ignore = build(five, "compose")["Containerfile.dockerignore"].splitlines()
    assert {"env/users.env", "env/admin.env", "shared.env", "certs/site.key", ".qkhyper"} <= set(ignore)
