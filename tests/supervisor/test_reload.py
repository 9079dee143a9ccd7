"""`serve --reload`: edits roll the workers of the app they belong to."""

from __future__ import annotations

from pathlib import Path

from qkhyper.supervisor.reload import WatchPlan, affected, source_folder
from tests.conftest import Qkhyper, free_port, get, write_config

SERVICE = """
from fastapi import FastAPI
app = FastAPI()

@app.get("/")
async def version() -> dict:
    import os
    return {{"version": {version}, "pid": os.getpid()}}
"""


def make_services(project: Path) -> None:
    for name in ("one", "two"):
        folder = project / name
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        (folder / "service.py").write_text(SERVICE.format(version=1))


def test_affected_is_pure(tmp_path: Path) -> None:
    plan = WatchPlan(
        {"one": [tmp_path / "one"], "two": [tmp_path / "two"]}, tmp_path / "hypercorn.toml", [tmp_path / "x"]
    )
    assert affected([tmp_path / "one" / "a.py"], plan) == ({"one"}, False)
    assert affected([tmp_path / "one" / "notes.txt"], plan) == (set(), False)
    assert affected([tmp_path / "hypercorn.toml"], plan) == ({"one", "two"}, True)
    assert affected([tmp_path / "x" / "data.json"], plan) == ({"one", "two"}, False)
    assert source_folder("one.service:app", tmp_path) is None
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "service.py").write_text("")
    assert source_folder("one.service:app", tmp_path) == tmp_path / "one"
    assert source_folder("qkhyper.demo.users:app", tmp_path) == Path(__import__("qkhyper.demo").demo.__file__).parent


def test_reload_rolls_only_the_edited_app(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    make_services(project)
    ports = {"one": free_port(), "two": free_port()}
    config = write_config(project, [{"name": n, "app": f"{n}.service:app", "port": p} for n, p in ports.items()])
    server = run_qkhyper(["serve", "--reload", "--config", str(config)], project)
    server.wait_ready()
    server.wait_for("watching for changes")
    two_pid = get(f"http://127.0.0.1:{ports['two']}/").json()["pid"]

    mark = len(server.lines)
    (project / "one" / "service.py").write_text(SERVICE.format(version=2))
    server.wait_for("change detected: rolling one$", start=mark)
    server.wait_for("rolling restart done", start=mark)
    assert get(f"http://127.0.0.1:{ports['one']}/").json()["version"] == 2
    assert get(f"http://127.0.0.1:{ports['two']}/").json()["pid"] == two_pid

    mark = len(server.lines)
    (project / "one" / "service.py").write_text("def broken(:\n")
    server.wait_for(r"one: rolling restart failed, keeping worker \d+: .*SyntaxError", start=mark)
    server.wait_for(r"rolling restart failed for one: kept worker \d+$", start=mark)  # not "done"
    assert not any("rolling restart done" in line for line in server.lines[mark:])
    assert get(f"http://127.0.0.1:{ports['one']}/").json()["version"] == 2

    mark = len(server.lines)
    (project / "one" / "service.py").write_text(SERVICE.format(version=3))
    config.write_text(config.read_text() + "\n# touched\n")
    server.wait_for("change detected: rolling one, two", start=mark)
    server.wait_for("rolling restart done", start=mark)
    assert get(f"http://127.0.0.1:{ports['one']}/").json()["version"] == 3
    assert get(f"http://127.0.0.1:{ports['two']}/").json()["pid"] != two_pid


def test_broken_config_edit_keeps_serving(project: Path, run_qkhyper: type[Qkhyper]) -> None:
    make_services(project)
    port = free_port()
    config = write_config(project, [{"name": "one", "app": "one.service:app", "port": port}])
    server = run_qkhyper(["serve", "--reload", "--config", str(config)], project)
    server.wait_ready()
    server.wait_for("watching for changes")
    config.write_text("keep_alive_timout = 3\n" + config.read_text())
    server.wait_for("config change not applied, workers keep serving: unknown key 'keep_alive_timout'")
    assert get(f"http://127.0.0.1:{port}/").json()["version"] == 1
