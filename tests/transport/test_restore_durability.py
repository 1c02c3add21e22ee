"""Acknowledged means on disk (issue 15 part 4, spec.md §7.1.4), the restore half: a restore
into ``--images`` syncs the file, renames it, syncs the directory and only then confirms;
a client save into a path syncs OUT and its directory before it returns. The ORDER is
checked through hooks on os.fsync, os.replace and the confirming send; and a failed image
write is reported as libvirt words it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from xdrstream.restore.client import Client
from xdrstream.restore.server import RestoreServer, ServerThread
from xdrstream.transport import sparse
from xdrstream.transport.errors import RemoteFailure
from xdrstream.transport.stream import Stream

SIZE = 3 * 1024 * 1024 + 77


def _target(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def _record(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_complete = os.fsync, os.replace, Stream.complete

    def fsync(fd: int) -> None:
        real_fsync(fd)
        events.append(("fsync", _target(fd)))

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        real_replace(src, dst)
        events.append(("rename", str(dst)))

    async def complete(self: Stream, result: object = None) -> None:
        events.append(("confirm", ""))
        await real_complete(self, result)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Stream, "complete", complete)
    return events


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_restore_into_images_is_stored_before_its_confirmation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: int
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    source = tmp_path / "disk.img"
    source.write_bytes(os.urandom(SIZE))
    events = _record(monkeypatch)
    server = RestoreServer(f"unix:{tmp_path}/xs.sock", images=images)
    with ServerThread(server) as running, Client.connect(running.address) as client:
        client.restore(source, variant=variant, name="disk")
    stored = images / "disk"
    assert stored.read_bytes() == source.read_bytes()
    partial = str(images / ".disk.partial")
    confirm = events.index(("confirm", ""))
    before = events[:confirm]
    assert before[-3:] == [("fsync", partial), ("rename", str(stored)), ("fsync", str(images))]


def test_save_into_a_path_is_synced_before_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "disk").write_bytes(os.urandom(SIZE))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "copy"
    server = RestoreServer(f"unix:{tmp_path}/xs.sock", images=images)
    with ServerThread(server) as running, Client.connect(running.address) as client:
        events = _record(monkeypatch)
        client.save(out, variant=2, name="disk")
        done = [e for e in events if e[0] == "fsync"]
    assert done[-2:] == [("fsync", str(out)), ("fsync", str(out_dir))]
    assert out.read_bytes() == (images / "disk").read_bytes()


def test_a_failed_image_write_names_the_image_and_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    source = tmp_path / "big"
    source.write_bytes(os.urandom(SIZE))

    def full(self: sparse.SparseWriter, data: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sparse.SparseWriter, "write", full)
    server = RestoreServer(f"unix:{tmp_path}/xs.sock", images=images)
    with (
        ServerThread(server) as running,
        Client.connect(running.address) as client,
        pytest.raises(RemoteFailure) as info,
    ):
        client.restore(source, variant=2, name="big")
    assert "cannot write image 'big': No space left on device" in str(info.value)
    assert "internal error" not in str(info.value)
    assert list(images.iterdir()) == []  # no partial file left behind
