"""The pure plan: names, grace, memory, replicas, probes, as tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from qkhyper.config import load_settings
from qkhyper.errors import ConfigError, UsageError
from qkhyper.export import build, facts, project_name
from qkhyper.export.model import Facts, Memory, dns_label, grace_seconds, memory, parse_replicas, plan


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("users", "users"),
        ("search_v2", "search-v2"),
        ("Admin.Panel", "admin-panel"),
        ("9lives", "app-9lives"),
        ("_x_", "x"),
        ("a" * 70, "a" * 63),
    ],
)
def test_dns_label(name: str, label: str) -> None:
    assert dns_label(name) == label


@pytest.mark.parametrize(("timeout", "grace"), [(10, 15), (3, 8), (2.5, 8), (0, 5), (20, 25)])
def test_grace_is_the_drain_plus_five(timeout: float, grace: int) -> None:
    assert grace_seconds(timeout) == grace


@pytest.mark.parametrize(
    ("rss", "workers", "expected"),
    [(0, 2, None), (300, 2, Memory(664, 964)), (512, 3, Memory(1600, 2112)), (100, 1, Memory(164, 264))],
)
def test_memory_from_max_rss(rss: int, workers: int, expected: Memory | None) -> None:
    assert memory(rss, workers) == expected


def test_replicas_parse() -> None:
    assert parse_replicas(["users=3", "gateway=1", "static=0"], ["users", "gateway", "static"]) == {
        "users": 3,
        "gateway": 1,
        "static": 0,
    }


@pytest.mark.parametrize("item", ["nobody=2", "users", "users=x", "users=-1", "users=١", "users=", "=2"])
def test_replicas_refused(item: str) -> None:
    with pytest.raises(UsageError, match="--replicas"):
        parse_replicas([item], ["users", "gateway", "static"])


def test_plan_of_five(five) -> None:
    deployment = plan(five, "img:1", {"orders": 3}, facts(five), "five")
    apps = {unit.app: unit for unit in deployment.apps}
    assert [unit.name for unit in deployment.apps] == ["users", "orders", "search-v2", "admin-panel", "reports"]
    assert {name: unit.port for name, unit in apps.items()} == {
        "users": 8001,
        "orders": 8002,
        "search_v2": 8003,
        "Admin.Panel": 8004,
        "reports": 8000,  # an auto port: each container has the port to itself
    }
    assert {unit.replicas for name, unit in apps.items() if name != "orders"} == {2}
    assert apps["orders"].replicas == 3
    assert {unit.grace for unit in deployment.units} == {25}  # graceful_timeout = 20
    assert apps["users"].probe.live_path == "/healthz" and apps["users"].probe.port == 9100
    assert deployment.gateway.probe.port == 9101
    assert deployment.static is not None and deployment.static.probe.ready_path == ""
    assert apps["users"].memory == Memory(2 * 300 + 64, 3 * 300 + 64)
    assert apps["orders"].memory == Memory(3 * 512 + 64, 4 * 512 + 64)
    assert apps["reports"].memory is None
    env_files = {f.shown: f.names for f in deployment.secrets if f.name != "gateway-tls"}
    assert env_files == {
        "shared.env": ("SENTRY_DSN",),
        "env/users.env": ("DATABASE_URL", "API_KEY"),
        "env/admin.env": ("ADMIN_TOKEN",),
    }
    assert {f.key: f.path for f in deployment.gateway.files} == {
        "tls.crt": "/app/certs/site.pem",
        "tls.key": "/app/certs/site.key",
    }
    assert apps["users"].listen == "127.0.0.1:8001" and apps["reports"].listen == ""


def test_plan_of_demo(demo) -> None:
    deployment = plan(demo, "img:1", {}, Facts(), project_name(demo))
    assert deployment.project == "qkhyper-demo"
    assert deployment.config_name == "" and "QKHYPER_CONFIG" not in deployment.apps[0].settings_env
    assert deployment.static is not None
    assert deployment.static.args[-2:] == ("--api-target", "http://gateway:8000")
    assert {unit.probe.ready_path for unit in deployment.units} == {""}  # no metrics port: TCP probes
    assert deployment.apps[0].settings_env == {"QKHYPER_FORWARDED_ALLOW_IPS": "*"}


def test_an_app_named_like_the_gateway_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "hypercorn.toml"
    config.write_text('[[qkhyper.apps]]\nname = "Gateway"\napp = "m:app"\nport = 8001\n')
    with pytest.raises(ConfigError, match="'gateway' is taken by the gateway"):
        build(load_settings(str(config), env={}), "kubernetes")


def test_env_values_never_leave(five, export) -> None:
    for target in ("kubernetes", "compose", "systemd"):
        for path in export(five, target).rglob("*"):
            if path.is_file():
                text = path.read_text()
                assert "secret-value" not in text and "postgres://" not in text and "abc" not in text, path
