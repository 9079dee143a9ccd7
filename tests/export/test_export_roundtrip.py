"""Round trip: the gateway each export starts routes exactly as `qkhyper gateway` does for the same config.

The exported gateway's arguments are fed back into the gateway's own route
builder and compared with the route table of the config as it is: the same
prefixes, the same targets by name (an app's Service or Compose service is
that app), the same TLS, base path and switches.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from qkhyper.config import Settings
from qkhyper.config.model import GatewayOptions
from qkhyper.gateway.routes import gateway_options

Row = tuple[str, tuple[Any, ...], bool, str, bool, bool]


def upstreams(args: list[str]) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == "--upstream"]


Apps = dict[tuple[str, int], str]


def table(options: GatewayOptions, apps: Apps | None = None) -> list[Row]:
    """prefix -> (targets by name, tls, base, add_slashes, fastapi_redirect).

    `apps` maps an exported (host, port) to the app that listens there; None
    names the config's own app routes by their source, as `qkhyper gateway` built them.
    """
    rows = []
    for route in options.routes:
        if apps is None and route.source.startswith("app "):
            targets: tuple[Any, ...] = (("app", route.source.removeprefix("app ")),)
        else:
            targets = tuple(("app", (apps or {})[t]) if t in (apps or {}) else t for t in route.targets)
        gw = options.settings
        switches = (route.switch("add_slashes", gw), route.switch("fastapi_redirect", gw))
        rows.append((route.prefix, targets, route.tls, route.base, *switches))
    return rows


def served(name: str, args: list[str]) -> Apps:
    """`serve APP --host 0.0.0.0 --port P` run as `name`: reachable at (name, P)."""
    return {(name, int(args[args.index("--port") + 1])): args[1]} if args[0] == "serve" else {}


def kubernetes(out: Path) -> tuple[list[str], Apps]:
    docs = [yaml.safe_load(p.read_text()) for p in out.glob("*-deployment.yaml")]
    args = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["args"] for d in docs}
    services = {
        d["metadata"]["name"]: d["spec"]["ports"][0]["port"]
        for d in (yaml.safe_load(p.read_text()) for p in out.glob("*-service.yaml"))
    }
    apps: Apps = {}
    for name, a in args.items():
        for (host, port), app in served(name, a).items():
            assert services[host] == port  # the Service carries the port the container listens on
            apps[host, port] = app
    return args["gateway"], apps


def compose(out: Path) -> tuple[list[str], Apps]:
    services = yaml.safe_load((out / "compose.yaml").read_text())["services"]
    apps: Apps = {}
    for name, service in services.items():
        apps.update(served(name, service["command"]))
    return services["gateway"]["command"], apps


def systemd(out: Path) -> tuple[list[str], Apps]:
    """The gateway's ExecStart; the apps are where their socket units listen."""
    units = {p.name: p.read_text().splitlines() for p in out.iterdir()}
    exec_start = next(line for line in units["qkhyper-gateway.service"] if line.startswith("ExecStart="))
    words = shlex.split(exec_start.removeprefix("ExecStart="))
    apps: Apps = {}
    for name, lines in units.items():
        if name.endswith(".socket"):
            keys = dict(line.split("=", 1) for line in lines if "=" in line)
            host, _, port = keys["ListenStream"].rpartition(":")
            apps[host, int(port)] = keys["FileDescriptorName"]
    return words[words.index("qkhyper") + 1 :], apps


READERS = {"kubernetes": kubernetes, "compose": compose, "systemd": systemd}


@pytest.mark.parametrize("target", list(READERS))
@pytest.mark.parametrize("config", ["demo", "five"])
def test_gateway_routes_survive_the_export(config: str, target: str, request, export) -> None:
    settings: Settings = request.getfixturevalue(config)
    args, apps = READERS[target](export(settings, target))
    assert args[0] == "gateway"
    exported = gateway_options(settings, upstreams(args), {})
    original = gateway_options(settings, (), {})
    expected = table(original)
    if config == "five":  # the auto-port app has no route on one machine until `serve` records its port
        expected.append(("/reports", (("app", "reports"),), False, "", False, True))
        expected.sort()
    got = table(exported, apps)
    if target == "systemd":
        got = [row for row in got if row[0] != "/reports"]
        expected = [row for row in expected if row[0] != "/reports"]
    assert got == expected


def test_five_has_what_the_round_trip_must_cover(five) -> None:
    """The comparison is only as good as the config: URL upstreams with a base, https, and both switches."""
    rows = table(gateway_options(five, (), {}))
    assert ("/pay", (("pay.example.com", 8443),), True, "/v1", False, True) in rows
    assert ("/search", (("app", "search_v2"),), False, "", True, True) in rows


def test_ingress_routes_match_the_gateway(five, demo, export) -> None:
    """Every prefix reaches its app directly (prefix stripped, X-Forwarded-Prefix set) or through the gateway."""
    for settings in (demo, five):
        out = export(settings, "kubernetes", ingress="nginx")
        _, served_at = kubernetes(out)
        apps = {host: app for (host, _port), app in served_at.items()}
        options = gateway_options(settings, (), {})
        ingresses = [yaml.safe_load(p.read_text()) for p in out.glob("*-ingress.yaml")]
        paths = {}
        for ingress in ingresses:
            notes = ingress["metadata"].get("annotations", {})
            for path in ingress["spec"]["rules"][0]["http"]["paths"]:
                service = path["backend"]["service"]["name"]
                paths[path["path"].removesuffix("(/|$)(.*)")] = (service, notes)
        for route in options.routes:
            service, notes = paths[route.prefix]
            gw = options.settings
            plain = route.source.startswith("app ") and not (
                route.switch("add_slashes", gw) or route.switch("fastapi_redirect", gw)
            )
            if plain:
                assert apps[service] == route.source.removeprefix("app ")
                assert notes["nginx.ingress.kubernetes.io/x-forwarded-prefix"] == route.prefix
            else:
                assert service == "gateway"
