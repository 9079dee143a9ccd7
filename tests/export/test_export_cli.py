"""`qkhyper export` on the command line: files written, mistakes one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from qkhyper.cli import main

FIVE = Path(__file__).parent / "five" / "hypercorn.toml"


def test_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "k8s"
    assert main(["export", "kubernetes", "-c", str(FIVE), "--out", str(out), "--image", "reg/shop:1"]) == 0
    listed = capsys.readouterr().out.split()
    assert str(out / "kustomization.yaml") in listed and (out / "users-deployment.yaml").is_file()
    assert "image: reg/shop:1" in (out / "users-deployment.yaml").read_text()


def test_default_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", "compose", "-c", str(FIVE)]) == 0
    assert (tmp_path / "deploy/compose/compose.yaml").is_file()


def test_filled_in_secrets_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "c"
    assert main(["export", "compose", "-c", str(FIVE), "--out", str(out)]) == 0
    secret = out / "secrets/shared-env-env-file/shared.env"
    secret.write_text("SENTRY_DSN=https://real\n")
    assert main(["export", "compose", "-c", str(FIVE), "--out", str(out)]) == 0
    assert secret.read_text() == "SENTRY_DSN=https://real\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["helm"], "unknown export target 'helm'; choose one of kubernetes, compose, systemd"),
        (["kubernetes", "--replicas", "nobody=2"], "--replicas 'nobody=2': 'nobody' is not one of"),
        (["kubernetes", "--replicas", "users=two"], "--replicas 'users=two': N must be a whole number"),
        (["compose", "--ingress", "nginx"], "only --ingress nginx, with the kubernetes target"),
        (["kubernetes", "--ingress", "traefik"], "only --ingress nginx"),
    ],
)
def test_mistakes_are_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", *args, "-c", str(FIVE), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
