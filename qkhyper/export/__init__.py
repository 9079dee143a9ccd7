"""`qkhyper export TARGET`: deployment files for orchestrators, generated from the config.

`build` reads what it needs from disk (`facts`), makes the plain plan
(model.py) and hands it to one renderer per target, each a pure function
returning {file name: text}. qkhyper itself never schedules, discovers or
scales across machines: the files hand that to Kubernetes, Compose or systemd.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from ..config.environ import read_env_file
from ..config.model import Settings
from ..errors import ConfigError, UsageError
from . import compose, containerfile, kubernetes, systemd
from .model import Facts, dns_label, parse_replicas, plan

TARGETS = ("kubernetes", "compose", "systemd")
INGRESSES = ("nginx",)
PYZ = "dist/qkhyper.pyz"  # where scripts/build-pyz writes the one-file build
DEFAULT_IMAGE = "qkhyper-app:latest"


def facts(settings: Settings) -> Facts:
    """What the plan needs from disk: env-file variable names (never values), the one-file build, the static root."""
    qk = settings.qkhyper
    names: dict[str, tuple[str, ...]] = {}
    for shown in {qk.env_file, *(spec.env_file for spec in qk.apps)} - {""}:
        try:
            names[shown] = tuple(read_env_file(settings.base_dir / shown, shown, {}))
        except ConfigError:
            names[shown] = ()  # not on this machine: the Secret says where it goes, without names
    return Facts(
        env_names=names,
        pyz=PYZ if (settings.base_dir / PYZ).is_file() else "",
        static=(settings.base_dir / qk.static.root).is_dir(),
        python=sys.executable,
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        version=__version__,
    )


def project_name(settings: Settings) -> str:
    """The `app.kubernetes.io/part-of` value: the config's folder, or `qkhyper-demo`."""
    if settings.config_file is None:
        return "qkhyper-demo"
    return dns_label(settings.base_dir.name or "qkhyper")


def build(
    settings: Settings,
    target: str,
    *,
    image: str = DEFAULT_IMAGE,
    replicas: Sequence[str] = (),
    ingress: str = "",
    found: Facts | None = None,
) -> dict[str, str]:
    """The files of one target: {path relative to the output folder: text}.

    Args:
        replicas: `APP=N` items (APP: an app's name, `gateway` or `static`).
        ingress: "nginx" adds Ingresses to the kubernetes target.
        found: what `facts` would read (tests pass their own).

    Raises:
        UsageError: an unknown target or ingress, a bad `--replicas` item.
        ConfigError: what the gateway's route builder refuses; clashing service names.
    """
    if target not in TARGETS:
        raise UsageError(f"unknown export target {target!r}; choose one of {', '.join(TARGETS)}")
    if ingress and (ingress not in INGRESSES or target != "kubernetes"):
        raise UsageError(f"--ingress {ingress!r}: only --ingress nginx, with the kubernetes target")
    if not re.fullmatch(r"[^\s\"']+", image):
        raise UsageError(f"--image {image!r} is not an image reference")
    names = [spec.name for spec in settings.qkhyper.apps] + ["gateway", "static"]
    deployment = plan(
        settings, image, parse_replicas(list(replicas), names), found or facts(settings), project_name(settings)
    )
    if target == "kubernetes":
        return {**kubernetes.render(deployment, ingress), **containerfile.render(deployment)}
    if target == "compose":
        return {**compose.render(deployment), **containerfile.render(deployment)}
    return systemd.render(deployment)


def write_files(folder: Path, files: dict[str, str]) -> list[Path]:
    """Write every file under `folder` (made if missing); secrets/ templates are kept if the user filled them in."""
    written = []
    for name, text in files.items():
        path = folder / name
        if name.startswith("secrets/") and path.exists():
            continue  # never overwrite what the user filled in
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
