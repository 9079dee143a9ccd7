"""`respond.ChunkReader`: page-cache reads on the loop, threads for the rest, same bytes either way."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qkhyper.static import respond
from qkhyper.static.respond import CHUNK, ChunkReader

SIZE = 3 * CHUNK + 123


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def big(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    data = os.urandom(SIZE)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd, data
    finally:
        os.close(fd)


@pytest.fixture
def thread_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Offsets read in a worker thread (a spy around the real function)."""
    offsets: list[int] = []
    real = respond._read_at

    def spy(fd: int, offset: int, size: int) -> bytes:
        offsets.append(offset)
        return real(fd, offset, size)

    monkeypatch.setattr(respond, "_read_at", spy)
    return offsets


async def read_all(reader: ChunkReader) -> bytes:
    chunks, offset = [], 0
    while chunk := await reader.read(offset, min(CHUNK, SIZE - offset) or 1):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


@pytest.mark.anyio
async def test_cold_file_is_read_in_threads(big: tuple[int, bytes], thread_reads: list[int]) -> None:
    fd, data = big
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # out of the page cache
    assert await read_all(ChunkReader(fd)) == data
    if respond._NOWAIT is not None:
        assert 0 in thread_reads  # the first chunk was not cached


@pytest.mark.anyio
async def test_cached_file_is_read_on_the_loop(big: tuple[int, bytes], thread_reads: list[int]) -> None:
    fd, data = big
    assert os.pread(fd, SIZE, 0) == data  # now cached
    assert await read_all(ChunkReader(fd)) == data
    if respond._NOWAIT is not None:
        assert thread_reads == [SIZE]  # only the EOF probe: preadv's 0 there means "nothing", not "blocked"
    else:
        assert len(thread_reads) == 5


@pytest.mark.anyio
async def test_ranges_and_end_of_file(big: tuple[int, bytes]) -> None:
    fd, data = big
    reader = ChunkReader(fd)
    assert await reader.read(10, 5) == data[10:15]
    assert await reader.read(SIZE - 3, 100) == data[-3:]
    assert await reader.read(SIZE, 100) == b""
