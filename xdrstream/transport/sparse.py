"""Sparse files: find holes on the sending side, recreate them on the receiving side.

A sparse stream (libvirt's `--sparse` upload and download) carries data and holes; a hole
travels as a length instead of that many zero bytes. The sender finds holes the way libvirt
does (virFileInData): `lseek(SEEK_DATA)` / `lseek(SEEK_HOLE)`, so explicitly written zeros
stay data. Where the filesystem cannot tell, Linux reports the whole file as data, and where
the call itself is unsupported `iter_extents` falls back to one data extent: the copy is
then complete, only not sparse.

The receiver seeks over holes and sets the final size with `ftruncate`, so a trailing hole
survives. Into something that cannot seek (a pipe, a socket) holes are written as zeros.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

SEEK_DATA: int | None = getattr(os, "SEEK_DATA", None)
SEEK_HOLE: int | None = getattr(os, "SEEK_HOLE", None)

_UNSUPPORTED = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ESPIPE)
_ZEROS = memoryview(bytes(1 << 20))


def zeros(length: int) -> Iterator[memoryview]:
    """A hole's content, ``length`` zero bytes, as views of one shared 1 MiB buffer (for a
    writer that cannot skip, or a digest of holes as zeros)."""
    while length > 0:
        step = min(length, len(_ZEROS))
        yield _ZEROS[:step]
        length -= step


WRITEBACK = 8 << 20
"""Bytes between write-back requests of a :class:`SparseWriter` whose file is fsynced at
the end (8 MiB: 16 MiB measured the same, 32 MiB left more to the fsync)."""


@dataclass(frozen=True)
class Extent:
    """A run of a file: `kind` "data" or "hole", from `offset`, `length` bytes."""

    kind: Literal["data", "hole"]
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Hole:
    """``length`` bytes of zeros in a sparse stream (spec.md §7.1.3).

    The one hole type of the transport: `iter_sparse` yields it, :mod:`.stream` sends and
    receives it (re-exported there as ``stream.Hole``), so a hole read from a file reaches
    the engine as is. A hole's offset is where the previous item ended.
    """

    length: int


@dataclass(frozen=True)
class Data:
    """File bytes at `offset`; `view` is a slice of the caller's buffer, valid until the
    next item is requested."""

    offset: int
    view: memoryview


def is_regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def iter_extents(fd: int, size: int | None = None) -> Iterator[Extent]:
    """The data extents and holes of a regular file, in order, covering [0, size).

    `size` defaults to the file's size now; a file that changes meanwhile is read as of
    this size (a shrinking file makes the reader fail, see `iter_sparse`).
    """
    end = os.fstat(fd).st_size if size is None else size
    offset = 0
    while offset < end:
        data_at = _seek(fd, offset, SEEK_DATA)
        if data_at is None:  # no hole detection here: the rest is data
            yield Extent("data", offset, end - offset)
            return
        data_at = min(data_at, end)
        if data_at > offset:
            yield Extent("hole", offset, data_at - offset)
        if data_at >= end:
            return
        hole_at = _seek(fd, data_at, SEEK_HOLE)
        hole_at = end if hole_at is None else min(hole_at, end)
        yield Extent("data", data_at, hole_at - data_at)
        offset = hole_at


def _seek(fd: int, offset: int, whence: int | None) -> int | None:
    """lseek for SEEK_DATA/SEEK_HOLE; None when unsupported, the file end when ENXIO."""
    if whence is None:
        return None
    try:
        return os.lseek(fd, offset, whence)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no data at or after offset: a hole to the end
            return os.fstat(fd).st_size
        if exc.errno in _UNSUPPORTED:
            return None
        raise


def iter_sparse(
    fd: int, buffer: bytearray | memoryview, sparse: bool = True
) -> Iterator[Hole | Data]:
    """A file's content as holes and data chunks read into `buffer` (at most its size each).

    Regular files are read with `preadv` at the extent offsets (`sparse=False` reads them
    as all data); anything else (a pipe, a socket) is read sequentially to EOF as data. No
    bulk data is copied beyond the kernel's copy into `buffer`.
    """
    view = memoryview(buffer).cast("B")
    if not view:
        raise ValueError("iter_sparse needs a non-empty buffer")
    if not is_regular(fd):
        offset = 0
        while count := os.readv(fd, [view]):
            yield Data(offset, view[:count])
            offset += count
        return
    size = os.fstat(fd).st_size
    extents = iter_extents(fd, size) if sparse else iter([Extent("data", 0, size)])
    for extent in extents:
        if extent.kind == "hole":
            yield Hole(extent.length)
            continue
        offset, end = extent.offset, extent.offset + extent.length
        while offset < end:
            count = os.preadv(fd, [view[: min(len(view), end - offset)]], offset)
            if count == 0:
                raise OSError(
                    errno.EIO, f"file shrank while being read: no data at offset {offset} of {size}"
                )
            yield Data(offset, view[:count])
            offset += count


class SparseWriter:
    """Writes a stream of data and holes to `fd` from its current position.

    On a regular file the content after the current position is discarded first (so a
    hole really is a hole, not old bytes), holes are skipped with `lseek`, and `finish()`
    sets the size, keeping a trailing hole. Anything else gets holes as zero bytes.

    ``writeback`` (bytes; 0: off) is for a writer that fsyncs at the end: every that many
    bytes, the kernel is asked to start writing them out (``posix_fadvise(DONTNEED)``), so
    the final fsync finds little left to do instead of the whole file (measured: a 256 MiB
    write + fsync 0.45-0.66 s -> 0.34-0.61 s, 9 of 10 pairs faster).
    """

    def __init__(self, fd: int, writeback: int = 0) -> None:
        self.fd = fd
        self.seekable = is_regular(fd)
        self.position = os.lseek(fd, 0, os.SEEK_CUR) if self.seekable else 0
        if self.seekable:
            os.ftruncate(fd, self.position)
        can = self.seekable and hasattr(os, "posix_fadvise")
        self._writeback = writeback if can else 0
        self._written_back = self.position

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            count = os.write(self.fd, view)
            self.position += count
            view = view[count:]
        start = self._written_back
        if self._writeback and self.position - start >= self._writeback:
            os.posix_fadvise(self.fd, start, self.position - start, os.POSIX_FADV_DONTNEED)
            self._written_back = self.position

    def hole(self, length: int) -> None:
        if length < 0:
            raise ValueError(f"hole length {length} is negative (at offset {self.position})")
        if self.seekable:
            self.position = os.lseek(self.fd, length, os.SEEK_CUR)
            return
        for view in zeros(length):
            self.write(view)

    def finish(self) -> None:
        """Set the file size to the end of what was written or skipped."""
        if self.seekable:
            os.ftruncate(self.fd, self.position)


def supports_holes(directory: str) -> bool:
    """Whether files in `directory` keep holes and report them through SEEK_DATA."""
    if SEEK_DATA is None:
        return False
    with tempfile.TemporaryFile(dir=directory) as probe:
        fd = probe.fileno()
        os.pwrite(fd, b"x", 1 << 20)
        os.ftruncate(fd, 2 << 20)
        return _seek(fd, 0, SEEK_DATA) == 1 << 20


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a new or renamed entry in ``directory`` durable: POSIX keeps the entry in the
    directory, so syncing the file alone does not (spec.md §7.1.4)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
