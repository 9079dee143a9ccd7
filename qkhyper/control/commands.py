"""`qkhyper status`, `restart`, `scale`, `reload` and `stop`: the operator's commands, as functions.

A config can have three supervisors running at once (`serve`, `gateway`,
`static`), each with its own control socket (`Settings.control_socket_path`).
These commands find the ones that answer and send each request where it
belongs: `restart` and `scale` to the supervisor that runs the named app (the
gateway and static are apps named `gateway` and `static` of theirs), `status`,
`reload` and `stop` to every supervisor that runs, or only to `--socket`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..config.model import Settings
from ..errors import ControlFailed, NotRunning, UsageError
from ..logs import format_table
from .client import ask, call
from .protocol import MAX_WORKERS, Reload, Restart, Scale, Status, Stop

SERVERS = ("serve", "gateway", "static")
STATUS_TIMEOUT = 10.0  # a status is answered from memory; longer means the supervisor is stuck
STOP_MARGIN = 15.0  # on top of graceful_timeout: workers' exits, lifespan shutdown, the last log lines


@dataclass(frozen=True, slots=True)
class Running:
    """A supervisor that answered: where, and its status."""

    path: Path
    status: dict[str, Any]

    def owns(self, name: str) -> str | None:
        """The unit label that serves app `name` here (its own label, or the `--aio` unit holding it)."""
        for app in self.status["apps"]:
            if name == app["name"] or name in app["apps"]:
                return str(app["name"])
        return None


def sockets(settings: Settings, socket: str | None = None) -> list[Path]:
    """Where this config's supervisors listen: `--socket` alone when given, else serve's, gateway's, static's."""
    if socket:
        return [Path(socket)]
    paths = [settings.control_socket_path(server) for server in SERVERS]
    found = [path for path in paths if path is not None]
    if not found:
        raise UsageError('control_socket = "" in the config: this config\'s supervisors have no control socket')
    return found


def running(settings: Settings, socket: str | None = None) -> list[Running]:
    """Every supervisor of this config that answers `status`.

    Raises:
        NotRunning: none answers.
    """
    paths = sockets(settings, socket)
    found = []
    for path in paths:
        try:
            found.append(Running(path, ask(path, Status(), STATUS_TIMEOUT)))
        except NotRunning:
            continue
    if not found:
        siblings = " (nor on its -gateway and -static siblings)" if len(paths) > 1 else ""
        raise NotRunning(f"nothing is running for {settings.source}: no supervisor answers on {paths[0]}{siblings}")
    return found


def status(settings: Settings, out: TextIO, *, as_json: bool = False, socket: str | None = None) -> int:
    supervisors = running(settings, socket)
    if as_json:
        answers = [{k: v for k, v in s.status.items() if k != "ok"} for s in supervisors]
        out.write(json.dumps({"supervisors": answers}, indent=2) + "\n")
        return 0
    for i, supervisor in enumerate(supervisors):
        if i:
            out.write("\n")
        for line in render_status(supervisor.status):
            out.write(line + "\n")
    return 0


def render_status(status: dict[str, Any]) -> list[str]:
    """A supervisor's status as text: a header line, a table of apps, a table of workers."""
    lines = [
        f"{status['server']}: pid {status['pid']}, {status['state']}, up {duration(status['uptime_s'])}"
        f"{', rolling ' + status['rolling'] if status.get('rolling') else ''}; config {status['config']}"
    ]
    apps = [("app", "prefix", "url", "backend", "workers")]
    workers = [("app", "#", "pid", "state", "up", "requests", "rss", "restarts", "last exit")]
    for app in status["apps"]:
        apps.append((app["name"], " ".join(app["prefixes"]), app["url"], app["backend"], str(app["workers_wanted"])))
        for w in app["workers"]:
            workers.append(
                (
                    app["name"],
                    str(w["slot"] or "-"),
                    str(w["pid"] or "-"),
                    w["state"],
                    "-" if w["uptime_s"] is None else duration(w["uptime_s"]),
                    "-" if w["requests"] is None else str(w["requests"]),
                    "-" if w["rss_mb"] is None else f"{w['rss_mb']:.0f} MB",
                    str(w["restarts"]),
                    w["last_exit"] or "-",
                )
            )
    return [*lines, *format_table(apps), "", *format_table(workers)]


def duration(seconds: float) -> str:
    """`3h04m`, `12m05s`, `42s`: uptime at a glance."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def restart(settings: Settings, apps: list[str], out: TextIO, *, timeout: float, socket: str | None = None) -> int:
    """A rolling restart of `apps` only; prints each app's serving pids before and after. 1 if one did not change."""
    by_supervisor = _route(running(settings, socket), apps)
    changed: dict[str, Any] = {}
    for supervisor, names in by_supervisor:
        changed.update(ask(supervisor.path, Restart(tuple(names)), timeout)["changed"])
    return _print_changes(changed, out)


def scale(settings: Settings, app: str, workers: int, out: TextIO, *, timeout: float, socket: str | None) -> int:
    if not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"scale: N must be from 1 to {MAX_WORKERS}, got {workers}")
    [(supervisor, names)] = _route(running(settings, socket), [app])
    answer = ask(supervisor.path, Scale(names[0], workers), timeout)
    for label, change in answer["changed"].items():
        out.write(f"{label}: {len(change['before'])} -> {len(change['after'])} worker(s): {_pids(change['after'])}\n")
    return 0 if all(len(c["after"]) == workers for c in answer["changed"].values()) else 1


def reload(settings: Settings, out: TextIO, *, timeout: float, socket: str | None = None) -> int:
    """Every running supervisor re-reads the config and rolls its apps, as `--reload` does on a config change."""
    changed: dict[str, Any] = {}
    for supervisor in running(settings, socket):
        changed.update(ask(supervisor.path, Reload(), timeout)["changed"])
    return _print_changes(changed, out)


def stop(settings: Settings, out: TextIO, *, now: bool = False, socket: str | None = None) -> int:
    """Stop every running supervisor (drain, or at once with `now`) and wait until each is gone."""
    supervisors = running(settings, socket)
    connections = [(s, call(s.path, Stop(now), STATUS_TIMEOUT)) for s in supervisors]
    deadline = time.monotonic() + settings.graceful_timeout + STOP_MARGIN
    late = []
    for supervisor, connection in connections:
        name = f"{supervisor.status['server']} (pid {supervisor.status['pid']})"
        if connection.wait_closed(deadline):
            out.write(f"{name}: stopped\n")
        else:
            late.append(name)
    if late:
        raise ControlFailed(f"still stopping after {settings.graceful_timeout + STOP_MARGIN:g} s: {', '.join(late)}")
    return 0


def _route(supervisors: list[Running], apps: list[str]) -> list[tuple[Running, list[str]]]:
    """Which supervisor runs each app, grouped, in the order given.

    Raises:
        UsageError: an app no running supervisor has, naming those it has.
    """
    routed: dict[Path, tuple[Running, list[str]]] = {}
    for name in apps:
        owner = next((s for s in supervisors if s.owns(name)), None)
        if owner is None:
            known = sorted({a for s in supervisors for app in s.status["apps"] for a in [app["name"], *app["apps"]]})
            raise UsageError(f"no running app {name!r}; running: {', '.join(known)}")
        routed.setdefault(owner.path, (owner, []))[1].append(name)
    return list(routed.values())


def _print_changes(changed: dict[str, Any], out: TextIO) -> int:
    unchanged = []
    for label, change in changed.items():
        before, after = change["before"], change["after"]
        if set(before) & set(after):
            unchanged.append(label)
            out.write(f"{label}: still {_pids(after)}: a new worker did not get ready (see the log)\n")
        else:
            out.write(f"{label}: {_pids(before)} -> {_pids(after)}\n")
    return 1 if unchanged else 0


def _pids(pids: list[int]) -> str:
    return ", ".join(str(p) for p in pids) or "-"
