"""The sdist and the wheel are whole: `python -m build` on a copy of the tree, then their file lists.

`python -m build` makes the sdist and then the wheel *from the sdist*, so a
file the sdist forgets is missing from the wheel too, as it would be for
anyone who installs from the sdist.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What a checkout may hold besides the project's files.
LOCAL = ("*.egg-info", "__pycache__", ".*", "build", "dist", "mutants", "bench-results.json")

pytest.importorskip("build", reason="`build` is not installed (pip install -e '.[dev]' brings it)")


def package_files() -> set[str]:
    """Every file of the package in the source tree, as a path relative to the repo."""
    return {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "qkhyper").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[set[str], set[str]]:
    """The file lists of the sdist (without its top folder) and of the wheel."""
    source = tmp_path_factory.mktemp("source") / "qkhyper"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*LOCAL))
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    with zipfile.ZipFile(wheel) as whl:
        in_wheel = set(whl.namelist())
    return in_sdist, in_wheel


def test_wheel_holds_the_whole_package(dists: tuple[set[str], set[str]]) -> None:
    _, in_wheel = dists
    assert package_files() - in_wheel == set()
    for name in ("qkhyper/demo/hypercorn.toml", "qkhyper/demo/static/index.html", "qkhyper/py.typed"):
        assert name in in_wheel
    assert any(n.startswith("qkhyper/demo/static/assets/") and n.endswith(".js") for n in in_wheel)
    assert not [n for n in in_wheel if n.startswith("tests/")]


def test_sdist_builds_runs_and_tests_alone(dists: tuple[set[str], set[str]]) -> None:
    in_sdist, _ = dists
    assert package_files() - in_sdist == set()
    wanted = {"pyproject.toml", "README.md", "MANIFEST.in", "hypercorn.toml", "tests/conftest.py", "scripts/build-pyz"}
    assert wanted - in_sdist == set()
    assert not [n for n in in_sdist if "__pycache__" in n or n.endswith(".pyc")]
