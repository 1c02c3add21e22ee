"""Sparse files: extents found with SEEK_DATA/SEEK_HOLE, holes recreated on the other side."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from xdrstream.restore.client import iter_source
from xdrstream.transport import sparse, stream
from xdrstream.transport.sparse import (
    Data,
    Extent,
    Hole,
    SparseWriter,
    iter_extents,
    iter_sparse,
    supports_holes,
)

KIB = 1024
MIB = 1024 * KIB


@pytest.fixture
def holes_supported(tmp_path: Path) -> None:
    if not supports_holes(str(tmp_path)):
        pytest.skip(f"the filesystem of {tmp_path} does not report holes (SEEK_DATA)")


def make_file(path: Path, size: int, pieces: list[tuple[int, bytes]]) -> bytes:
    """A file of `size` bytes with `pieces` written at their offsets, holes elsewhere;
    returns its expected content."""
    content = bytearray(size)
    with open(path, "wb") as out:
        for offset, data in pieces:
            out.seek(offset)
            out.write(data)
            content[offset : offset + len(data)] = data
        out.truncate(size)
    return bytes(content)


# data, a hole, explicitly written zeros (data, not a hole), a trailing hole
PIECES = [(0, os.urandom(8 * KIB)), (1 * MIB, bytes(4 * KIB)), (2 * MIB, b"z" * (64 * KIB))]
SIZE = 3 * MIB


@pytest.fixture
def holey(tmp_path: Path, holes_supported: None) -> tuple[Path, bytes]:
    path = tmp_path / "holey.img"
    return path, make_file(path, SIZE, PIECES)


def extents_of(path: Path) -> list[Extent]:
    with open(path, "rb") as source:
        return list(iter_extents(source.fileno()))


def copy(source: Path, destination: Path, buffer_size: int = 256 * KIB) -> list[Hole | Data]:
    items: list[Hole | Data] = []
    with open(source, "rb") as src, open(destination, "wb") as dst:
        writer = SparseWriter(dst.fileno())
        for item in iter_sparse(src.fileno(), bytearray(buffer_size)):
            if isinstance(item, Hole):
                writer.hole(item.length)
            else:
                assert item.offset == writer.position
                writer.write(item.view)
            items.append(item)
        writer.finish()
    return items


def test_extents_follow_the_files_layout(holey: tuple[Path, bytes]) -> None:
    path, _ = holey
    assert extents_of(path) == [
        Extent("data", 0, 8 * KIB),
        Extent("hole", 8 * KIB, MIB - 8 * KIB),
        Extent("data", MIB, 4 * KIB),  # zeros that were written stay data
        Extent("hole", MIB + 4 * KIB, MIB - 4 * KIB),
        Extent("data", 2 * MIB, 64 * KIB),
        Extent("hole", 2 * MIB + 64 * KIB, MIB - 64 * KIB),
    ]


def test_a_file_that_starts_with_a_hole_or_is_all_hole(
    tmp_path: Path, holes_supported: None
) -> None:
    leading = tmp_path / "leading"
    make_file(leading, 2 * MIB, [(MIB, b"d" * 4096)])
    assert extents_of(leading) == [
        Extent("hole", 0, MIB),
        Extent("data", MIB, 4096),
        Extent("hole", MIB + 4096, MIB - 4096),
    ]
    empty_disk = tmp_path / "all-hole"
    make_file(empty_disk, 5 * MIB, [])
    assert extents_of(empty_disk) == [Extent("hole", 0, 5 * MIB)]
    (tmp_path / "empty").touch()
    assert extents_of(tmp_path / "empty") == []


def test_copy_keeps_content_size_holes_and_allocated_blocks(
    holey: tuple[Path, bytes], tmp_path: Path
) -> None:
    source, content = holey
    destination = tmp_path / "copy.img"
    items = copy(source, destination)
    assert destination.read_bytes() == content
    assert destination.stat().st_size == SIZE  # the trailing hole is kept
    assert extents_of(destination) == extents_of(source)
    assert destination.stat().st_blocks == source.stat().st_blocks
    assert destination.stat().st_blocks * 512 < SIZE // 10
    assert sum(item.length for item in items if isinstance(item, Hole)) == SIZE - 76 * KIB


def test_a_files_holes_are_the_streams_holes_passed_on_unchanged(
    holey: tuple[Path, bytes],
) -> None:
    """One hole type (issue 12): what `iter_sparse` yields is what a stream sends and
    receives, so the upload path hands the very objects on instead of re-wrapping them."""
    path, _ = holey
    with open(path, "rb") as source:
        holes = [i for i in iter_sparse(source.fileno(), bytearray(4096)) if isinstance(i, Hole)]
    assert [hole.length for hole in holes] == [MIB - 8 * KIB, MIB - 4 * KIB, MIB - 64 * KIB]
    passed = list(iter_source(holes))
    assert all(out is hole for out, hole in zip(passed, holes, strict=True))
    restored = [item for item in iter_source(path) if isinstance(item, stream.Hole)]
    assert restored == holes


def test_data_comes_in_chunks_of_at_most_the_buffer(
    holey: tuple[Path, bytes], tmp_path: Path
) -> None:
    source, content = holey
    items = copy(source, tmp_path / "copy.img", buffer_size=3000)
    data = [item for item in items if isinstance(item, Data)]
    assert max(len(item.view) for item in data) == 3000
    assert (tmp_path / "copy.img").read_bytes() == content


def test_non_sparse_mode_sends_everything_as_data(holey: tuple[Path, bytes]) -> None:
    source, content = holey
    with open(source, "rb") as src:
        chunks = [
            bytes(item.view) for item in _data(iter_sparse(src.fileno(), bytearray(MIB), False))
        ]
    assert len(chunks) == 3  # 3 MiB, no holes, in buffer-sized chunks
    assert b"".join(chunks) == content


def test_without_seek_data_the_whole_file_is_one_data_extent(
    holey: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_lseek = os.lseek

    def lseek_without_holes(fd: int, offset: int, whence: int) -> int:
        if whence in (sparse.SEEK_DATA, sparse.SEEK_HOLE):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_lseek(fd, offset, whence)

    monkeypatch.setattr(os, "lseek", lseek_without_holes)
    path, _ = holey
    assert extents_of(path) == [Extent("data", 0, SIZE)]


def test_writer_into_a_pipe_writes_holes_as_zeros() -> None:
    read_fd, write_fd = os.pipe()
    try:
        writer = SparseWriter(write_fd)
        assert not writer.seekable
        writer.write(b"ab")
        writer.hole(5)
        writer.write(b"c")
        writer.hole(0)
        writer.finish()
        os.close(write_fd)
        write_fd = -1
        assert os.read(read_fd, 100) == b"ab\0\0\0\0\0c"
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


def test_reader_from_a_pipe_yields_everything_as_data() -> None:
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"x" * 5000)
        os.close(write_fd)
        write_fd = -1
        items = list(_copies(iter_sparse(read_fd, bytearray(4096))))
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    assert items == [(0, b"x" * 4096), (4096, b"x" * 904)]


def _data(items: Iterator[Hole | Data]) -> Iterator[Data]:
    for item in items:
        assert isinstance(item, Data)
        yield item


def _copies(items: Iterator[Hole | Data]) -> Iterator[tuple[int, bytes]]:
    for item in items:
        assert isinstance(item, Data)
        yield item.offset, bytes(item.view)


def test_writer_discards_old_content_so_holes_are_holes(
    holey: tuple[Path, bytes], tmp_path: Path
) -> None:
    source, content = holey
    destination = tmp_path / "reused.img"
    destination.write_bytes(b"\xff" * (4 * MIB))
    copy(source, destination)
    assert destination.read_bytes() == content


def test_a_negative_hole_is_refused(tmp_path: Path) -> None:
    with open(tmp_path / "f", "wb") as out:
        writer = SparseWriter(out.fileno())
        writer.write(b"abc")
        with pytest.raises(ValueError, match="hole length -1 is negative \\(at offset 3\\)"):
            writer.hole(-1)


def test_a_file_that_shrinks_while_read_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "shrinking"
    path.write_bytes(b"x" * 10000)
    with open(path, "rb") as src:
        items = iter_sparse(src.fileno(), bytearray(4096), sparse=False)
        next(items)
        os.truncate(path, 5000)
        with pytest.raises(OSError, match="file shrank while being read: no data at offset 5000"):
            list(items)


def test_writeback_asks_the_kernel_to_write_out_each_step_and_keeps_the_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`SparseWriter(writeback=N)` (issue 12: a save's final fsync no longer finds the whole
    file dirty): one write-back request per N bytes written, over exactly what was written
    since the last one; holes and content come out as without it."""
    advice: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def record(fd: int, offset: int, length: int, how: int) -> None:
        advice.append((offset, length, how))
        real(fd, offset, length, how)

    monkeypatch.setattr(os, "posix_fadvise", record)
    step = 64 * KIB
    chunk = os.urandom(40 * KIB)
    path = tmp_path / "out.img"
    with open(path, "wb") as out:
        writer = sparse.SparseWriter(out.fileno(), writeback=step)
        for _ in range(4):
            writer.write(chunk)
        writer.hole(MIB)
        writer.write(chunk)
        writer.finish()
    assert path.read_bytes() == chunk * 4 + bytes(MIB) + chunk
    assert advice == [  # after 80 KiB, then 80 more, then the hole and the last chunk
        (0, 80 * KIB, os.POSIX_FADV_DONTNEED),
        (80 * KIB, 80 * KIB, os.POSIX_FADV_DONTNEED),
        (160 * KIB, MIB + 40 * KIB, os.POSIX_FADV_DONTNEED),
    ]
