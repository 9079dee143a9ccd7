"""`qkhyper static` as a process: CLI errors, alias, backends, big files, cache invalidation."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import Qkhyper, free_port, get, run_cli
from tests.static.conftest import SECRET, build_tree, raw_request

Start = Callable[..., tuple[Qkhyper, int]]
BIG = 20 * 1024 * 1024
MAX_GROWTH = 8 * 1024 * 1024  # measured: 2.5-3.5 MiB on either backend; the whole file would be 20


@pytest.fixture
def start(run_qkhyper: type[Qkhyper], tmp_path: Path) -> Start:
    """Start `qkhyper <command> --root ROOT --port P [extra]` in tmp_path (no config: the demo's)."""

    def starter(root: Path, *extra: str, command: str = "static") -> tuple[Qkhyper, int]:
        port = free_port()
        server = run_qkhyper([command, "--root", str(root), "--port", str(port), *extra], cwd=tmp_path)
        server.wait_ready()
        return server, port

    return starter


def test_missing_root_is_exit_2(tmp_path: Path) -> None:
    result = run_cli(["static", "--root", "nope", "--port", str(free_port())], cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope" in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_serve_static_alias(start: Start, tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("<p>alias</p>")
    _, port = start(root, command="serve_static")
    assert get(f"http://127.0.0.1:{port}/").text == "<p>alias</p>"


def test_uvicorn_backend(start: Start, tmp_path: Path) -> None:
    root = build_tree(tmp_path / "site")
    _, port = start(root, "--backend", "uvicorn")
    url = f"http://127.0.0.1:{port}"
    assert get(url + "/").content.startswith(b"<!doctype html>")
    assert get(url + "/app.js").headers["content-type"] == "text/javascript; charset=utf-8"
    assert get(url + "/users/1", headers={"Accept": "text/html"}).status_code == 200
    partial = get(url + "/app.js", headers={"Range": "bytes=0-6"})
    assert (partial.status_code, partial.content) == (206, b"console")
    etag = partial.headers["etag"]
    assert get(url + "/app.js", headers={"If-None-Match": etag}).status_code == 304
    for target in (b"/../secret.txt", b"/%2e%2e/secret.txt", b"/..%2fsecret.txt", b"/link-out", b"/.env", b"/CON"):
        response = raw_request(port, target)
        assert (response.status, response.body) == (404, b'{"error": "not found"}'), target
        assert SECRET not in response.body


def peak_rss_while(pid: int, action: Callable[[], bytes]) -> tuple[int, bytes]:
    """Run `action` while sampling the worker's RSS; return (peak RSS, action's result)."""
    process = psutil.Process(pid)
    peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = action()
    finally:
        done.set()
        sampler.join(10)
    return peak, result


@pytest.mark.parametrize("backend", ["hypercorn", "uvicorn"])
def test_big_file_streams_in_constant_memory(start: Start, tmp_path: Path, backend: str) -> None:
    root = tmp_path / "www"
    root.mkdir()
    data = os.urandom(BIG)
    (root / "big.bin").write_bytes(data)
    with (root / "big.bin").open("rb") as cold:  # out of the page cache: the first download reads in threads
        os.fsync(cold.fileno())
        os.posix_fadvise(cold.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    (root / "small.txt").write_text("warm")
    server, port = start(root, "--backend", backend)
    [pid] = server.pids("static")
    url = f"http://127.0.0.1:{port}"
    assert get(url + "/small.txt").text == "warm"
    before = psutil.Process(pid).memory_info().rss

    def download() -> bytes:
        digest = hashlib.sha256()
        with httpx.stream("GET", url + "/big.bin", timeout=60) as response:
            assert response.status_code == 200
            assert response.headers["content-length"] == str(BIG)
            assert response.headers["accept-ranges"] == "bytes"  # advertised where resuming makes sense
            for chunk in response.iter_raw():
                digest.update(chunk)
        return digest.digest()

    peak, digest = peak_rss_while(pid, download)
    assert digest == hashlib.sha256(data).digest()
    assert peak - before < MAX_GROWTH, f"worker RSS grew by {(peak - before) >> 20} MiB for a {BIG >> 20} MiB file"
    tail = get(url + "/big.bin", headers={"Range": f"bytes={BIG - 5}-"})
    assert (tail.status_code, tail.content) == (206, data[-5:])
    middle = get(url + "/big.bin", headers={"Range": "bytes=3000000-5999999"})
    assert middle.content == data[3000000:6000000]


def wait_until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll `check` until true or the deadline passes (the server rechecks routes every 2 s)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.1)


def test_edits_are_seen_on_the_next_request(start: Start, tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    page = root / "index.html"
    page.write_text("<p>old</p>")
    _, port = start(root)
    url = f"http://127.0.0.1:{port}/"
    first = get(url)
    assert first.text == "<p>old</p>"
    stat = page.stat()
    page.write_text("<p>new</p>")  # same size, same inode...
    os.utime(page, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ...and the old mtime, as builds do
    second = get(url)
    assert second.text == "<p>new</p>"
    assert second.headers["etag"] != first.headers["etag"]
    assert get(url, headers={"If-None-Match": first.headers["etag"]}).status_code == 200

    page.write_bytes(b"x" * (300 * 1024))  # grows past the in-memory limit: now streamed
    assert get(url).content == b"x" * (300 * 1024)
    page.unlink()
    assert get(url).status_code == 404
    page.write_text("<p>back</p>")
    assert get(url).text == "<p>back</p>"


def test_new_sibling_and_removed_file_are_noticed(start: Start, tmp_path: Path) -> None:
    root = tmp_path / "www"
    (root / "assets").mkdir(parents=True)
    script = root / "assets" / "app.js"
    script.write_text("plain")
    _, port = start(root)
    url = f"http://127.0.0.1:{port}/assets/app.js"
    headers = {"Accept-Encoding": "br"}
    assert get(url, headers=headers).text == "plain"
    (root / "assets" / "app.js.br").write_bytes(b"BR")
    wait_until(lambda: get(url, headers=headers).headers.get("content-encoding") == "br")
    assert get(url, headers=headers).content == b"BR"
    (root / "assets" / "app.js.br").unlink()
    response = get(url, headers=headers)
    assert (response.status_code, response.text) == (200, "plain")


def test_symlink_retargeted_outside_is_refused(start: Start, tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "real.txt").write_text("inside")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    link = root / "link.txt"
    link.symlink_to(root / "real.txt")
    _, port = start(root)
    url = f"http://127.0.0.1:{port}/link.txt"
    assert get(url).text == "inside"
    link.unlink()
    link.symlink_to(tmp_path / "secret.txt")
    wait_until(lambda: get(url).status_code == 404)
    assert SECRET not in get(url).content
