"""The kubernetes export: every manifest passes kubernetes-validate, and says what the config says."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from qkhyper.export.kubernetes import KUBERNETES_VERSION


def load(folder: Path) -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(folder.glob("*.yaml"))}


def pod(objects: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = objects[f"{name}-deployment.yaml"]["spec"]["template"]["spec"]
    return spec


def validate(files: list[Path]) -> None:
    """kubernetes-validate over the files, against the stated version's offline schemas, unknown keys refused."""
    tool = shutil.which("kubernetes-validate")
    if tool is None:
        pytest.skip("kubernetes-validate is not installed (pip install '.[dev]')")
    run = subprocess.run(
        [tool, "--strict", "--quiet", "-k", KUBERNETES_VERSION, *map(str, files)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("config", ["demo", "five"])
def test_every_manifest_validates(config: str, request, export) -> None:
    out = export(request.getfixturevalue(config), "kubernetes", ingress="nginx", replicas=["users=3"])
    manifests = sorted(p for p in out.glob("*.yaml") if p.name != "kustomization.yaml")
    validate(manifests)
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in manifests]


def test_a_broken_manifest_fails_validation(demo, export) -> None:
    """The validator is not a rubber stamp: a misspelt key fails it."""
    out = export(demo, "kubernetes")
    path = out / "users-deployment.yaml"
    path.write_text(path.read_text().replace("terminationGracePeriodSeconds", "terminationGracePeriod"))
    with pytest.raises(AssertionError):
        validate([path])


def test_apps_follow_the_config(five, export) -> None:
    objects = load(export(five, "kubernetes", replicas=["orders=3"]))
    grace = math.ceil(five.graceful_timeout) + 5
    for spec in five.qkhyper.apps:
        name = {"search_v2": "search-v2", "Admin.Panel": "admin-panel"}.get(spec.name, spec.name)
        port = spec.port or 8000
        deployment = objects[f"{name}-deployment.yaml"]
        assert deployment["spec"]["replicas"] == (3 if spec.name == "orders" else 2)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == name and labels["app.kubernetes.io/component"] == "app"
        assert labels["app.kubernetes.io/part-of"] == "five"
        spec_ = pod(objects, name)
        assert spec_["terminationGracePeriodSeconds"] == grace
        (container,) = spec_["containers"]
        assert container["args"] == ["serve", spec.name, "--host", "0.0.0.0", "--port", str(port)]
        assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
        assert container["ports"][0]["containerPort"] == port
        # The metrics port is on: probes ask the supervisor, on the metrics listener facing the pod.
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 9100}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 9100}
        assert {"name": "QKHYPER_METRICS_HOST", "value": "0.0.0.0"} in container["env"]
        service = objects[f"{name}-service.yaml"]
        assert service["spec"]["ports"][0]["port"] == port
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    users = pod(objects, "users")["containers"][0]
    assert users["resources"] == {"requests": {"memory": "664Mi"}, "limits": {"memory": "964Mi"}}
    assert "resources" not in pod(objects, "reports")["containers"][0]
    assert objects["users-env.yaml"]["data"] == {"LOG_LEVEL": "debug", "GREETING": "cost $5"}
    assert users["envFrom"] == [{"configMapRef": {"name": "users-env"}}]


def test_demo_probes_are_tcp(demo, export) -> None:
    objects = load(export(demo, "kubernetes"))
    for name, port in (("users", 8001), ("orders", 8002), ("gateway", 8000), ("static", 8080)):
        container = pod(objects, name)["containers"][0]
        assert pod(objects, name)["terminationGracePeriodSeconds"] == 15  # graceful_timeout 10 + 5
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["tcpSocket"] == {"port": port}


def test_secrets_are_for_filling_in(five, export) -> None:
    objects = load(export(five, "kubernetes"))
    users = objects["env-users-env-env-file-secret.yaml"]
    assert users["stringData"] == {"users.env": "DATABASE_URL=\nAPI_KEY=\n"}
    tls = objects["gateway-tls-secret.yaml"]
    assert tls["type"] == "kubernetes.io/tls" and tls["stringData"] == {"tls.crt": "", "tls.key": ""}
    mounts = {m["mountPath"]: m for m in pod(objects, "gateway")["containers"][0]["volumeMounts"]}
    assert mounts["/app/certs/site.pem"]["subPath"] == "tls.crt"
    assert mounts["/app/certs/site.key"]["subPath"] == "tls.key"
    users_mounts = {m["mountPath"] for m in pod(objects, "users")["containers"][0]["volumeMounts"]}
    assert {"/app/env/users.env", "/app/shared.env", "/app/.qkhyper", "/tmp"} <= users_mounts


def test_gateway_reaches_apps_by_service_name(demo, export) -> None:
    objects = load(export(demo, "kubernetes"))
    args = pod(objects, "gateway")["containers"][0]["args"]
    assert args == [
        "gateway", "--host", "0.0.0.0", "--port", "8000",
        "--upstream", "users=users:8001", "--upstream", "orders=orders:8002",
    ]  # fmt: skip
    static = pod(objects, "static")["containers"][0]["args"]
    assert static[-2:] == ["--api-target", "http://gateway:8000"]


def test_ingress_strips_the_prefix_and_says_so(demo, export) -> None:
    objects = load(export(demo, "kubernetes", ingress="nginx"))
    users = objects["users-ingress.yaml"]
    notes = users["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/rewrite-target"] == "/$2"
    assert notes["nginx.ingress.kubernetes.io/x-forwarded-prefix"] == "/users"
    (path,) = users["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == "/users(/|$)(.*)"
    assert path["backend"]["service"] == {"name": "users", "port": {"number": 8001}}
    front = objects["gateway-ingress.yaml"]["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["backend"]["service"]["name"]) for p in front] == [("/", "static")]
