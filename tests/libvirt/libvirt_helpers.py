"""Helpers for the libvirt tests: sparse files, their layout, digests, virsh runs."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from xdrstream.transport import sparse

MiB = 1 << 20
KiB = 1 << 10
VIRSH_TIMEOUT = 30.0


def make_file(path: Path, size: int, pieces: Sequence[tuple[int, int]]) -> None:
    """A sparse file of ``size`` bytes with random data at each (offset, length) piece and
    holes elsewhere (a fresh file: nothing but the pieces is allocated)."""
    with open(path, "wb") as out:
        for offset, length in pieces:
            out.seek(offset)
            out.write(os.urandom(length))
        out.truncate(size)


def make_random_file(path: Path, size: int) -> None:
    with open(path, "wb") as out:
        out.write(os.urandom(size))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while block := source.read(MiB):
            digest.update(block)
    return digest.hexdigest()


def layout(path: Path) -> list[tuple[str, int, int]]:
    """The data extents and holes of a file, as SEEK_DATA/SEEK_HOLE report them."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return [(e.kind, e.offset, e.length) for e in sparse.iter_extents(fd)]
    finally:
        os.close(fd)


def virsh(uri: str, *args: str, timeout: float = VIRSH_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run real virsh against ``uri`` (never raises on failure: callers check)."""
    return subprocess.run(
        ["virsh", "-q", "-c", uri, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
