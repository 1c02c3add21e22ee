"""Acknowledged means on disk (issue 15 part 4, spec.md §7.1.4): the storage server syncs a
volume before confirming its upload; LibvirtClient.download syncs OUT (and, for a new file,
its directory) before returning.  The ORDER is checked through hooks on os.fsync and on the
confirming send, not only the outcome."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from libvirt_helpers import MiB, make_random_file, sha256
from libvirt_servers import OurServer

from xdrstream.libvirt import LibvirtClient
from xdrstream.transport.stream import Stream

SIZE = 2 * MiB + 333


def _what(fd: int) -> tuple[str, int]:
    st = os.fstat(fd)
    return os.readlink(f"/proc/self/fd/{fd}"), st.st_size


def test_upload_is_synced_before_its_confirmation(
    our_server: OurServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    volume = our_server.directory / "vol1"
    volume.write_bytes(b"")
    source = tmp_path / "in"
    make_random_file(source, SIZE)
    events: list[tuple[str, str, int]] = []
    real_fsync, real_complete = os.fsync, Stream.complete

    def fsync(fd: int) -> None:
        real_fsync(fd)
        events.append(("fsync", *_what(fd)))

    async def complete(self: Stream, result: object = None) -> None:
        events.append(("confirm", "", 0))  # the server's confirming STREAM/OK goes now
        await real_complete(self, result)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Stream, "complete", complete)
    with LibvirtClient.open(our_server.uri) as client:
        vol = client.lookup_volume("images", "vol1")
        client.upload(vol, source)
    confirm = events.index(("confirm", "", 0))
    synced = [e for e in events[:confirm] if e[0] == "fsync" and e[1] == str(volume)]
    assert synced and synced[-1][2] == SIZE  # the whole volume, synced, then confirmed
    assert sha256(volume) == sha256(source)


@pytest.mark.parametrize("exists", [False, True])
def test_download_is_synced_before_success(
    our_server: OurServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exists: bool
) -> None:
    make_random_file(our_server.directory / "vol1", SIZE)
    out = tmp_path / "out" / "copy"
    out.parent.mkdir()
    if exists:
        out.write_bytes(b"old")
    synced: list[tuple[str, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(_what(fd))

    monkeypatch.setattr(os, "fsync", fsync)
    with LibvirtClient.open(our_server.uri) as client:
        vol = client.lookup_volume("images", "vol1")
        client.download(vol, out)
        done = list(synced)  # what was synced by the time download() returned
    assert (str(out), SIZE) in done
    # a new file's name is durable too: its directory synced after the file
    assert (done[-1][0] == str(out.parent)) == (not exists)
    assert sha256(out) == sha256(our_server.directory / "vol1")
