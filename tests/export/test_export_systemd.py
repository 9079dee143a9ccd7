"""The systemd export: `systemd-analyze verify` accepts the units, and their keys say what the config says."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def units(folder: Path) -> dict[str, configparser.ConfigParser]:
    found = {}
    for path in sorted(folder.iterdir()):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
        parser.read_string(path.read_text())
        found[path.name] = parser
    return found


def verify(folder: Path, names: list[str]) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify; instances of the template resolve from qkhyper@.service in the same folder."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not on this machine (systemd is not installed)")
    paths = [str(folder / name) for name in names]
    return subprocess.run([tool, "verify", *paths], capture_output=True, text=True)


def our_complaints(run: subprocess.CompletedProcess[str], folder: Path) -> list[str]:
    """verify also reports on the machine's own units; only lines about ours count."""
    return [line for line in run.stderr.splitlines() if str(folder) in line or "qkhyper" in line]


@pytest.mark.parametrize("config", ["demo", "five"])
def test_units_verify(config: str, request, export) -> None:
    settings = request.getfixturevalue(config)
    out = export(settings, "systemd")
    instances = [f"qkhyper@{spec.name}.service" for spec in settings.qkhyper.apps]
    others = sorted(p.name for p in out.iterdir() if p.name != "qkhyper@.service")
    run = verify(out, instances + others)
    assert run.returncode == 0 and not our_complaints(run, out), run.stderr


def test_a_broken_unit_fails_verify(demo, export) -> None:
    out = export(demo, "systemd")
    path = out / "qkhyper@.service"
    path.write_text(path.read_text().replace("KillMode=mixed", "KillMode=mixd"))
    assert our_complaints(verify(out, ["qkhyper@users.service"]), out)


def test_unit_keys(five, export) -> None:
    out = export(five, "systemd")
    found = units(out)
    template = found["qkhyper@.service"]["Service"]
    assert template["Type"] == "notify" and template["NotifyAccess"] == "main"
    assert template["KillMode"] == "mixed"
    assert template["TimeoutStopSec"] == "25"  # graceful_timeout 20 + 5
    assert template["ExecStart"] == f"{sys.executable} -m qkhyper serve %i --config {five.source}"
    assert template["WorkingDirectory"] == str(five.base_dir)
    sockets = {name: unit["Socket"] for name, unit in found.items() if name.endswith(".socket")}
    assert set(sockets) == {f"qkhyper-{n}.socket" for n in ("users", "orders", "search-v2", "admin-panel")}
    users = sockets["qkhyper-users.socket"]
    assert (users["ListenStream"], users["FileDescriptorName"], users["Service"]) == (
        "127.0.0.1:8001",
        "users",
        "qkhyper@users.service",
    )
    assert sockets["qkhyper-admin-panel.socket"]["FileDescriptorName"] == "Admin.Panel"
    gateway = found["qkhyper-gateway.service"]["Service"]
    assert gateway["ExecStart"].endswith(f"-m qkhyper gateway --config {five.source}")
    wants = found["qkhyper.target"]["Unit"]["Wants"].split()
    assert "qkhyper@reports.service" in wants and "qkhyper-static.service" in wants
