"""Exports of the bundled demo and of five/hypercorn.toml, written to a temporary folder per test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from qkhyper.config import Settings, load_settings
from qkhyper.export import build, write_files

FIVE = Path(__file__).parent / "five" / "hypercorn.toml"

Exporter = Callable[..., Path]


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The bundled demo, as found from a folder without a hypercorn.toml."""
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return load_settings(None, env={})


@pytest.fixture
def five() -> Settings:
    return load_settings(str(FIVE), env={})


@pytest.fixture
def export(tmp_path: Path) -> Exporter:
    """export(settings, target, **options) -> the folder the files were written to."""

    def run(settings: Settings, target: str, **options: object) -> Path:
        out = tmp_path / f"out-{target}-{len(list(tmp_path.iterdir()))}"
        write_files(out, build(settings, target, **options))  # type: ignore[arg-type]
        return out

    return run
