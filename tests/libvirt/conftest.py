"""Fixtures for the libvirt tests: one private libvirtd per module, our storage server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from realpeers import Libvirtd, private_libvirtd, require

from xdrstream.libvirt.storage_server import StorageServer, StorageServerThread
from xdrstream.transport.sparse import supports_holes


@pytest.fixture(scope="module")
def daemon() -> Iterator[Libvirtd]:
    """A private libvirtd (Unix socket and TCP) with the directory pool ``tpool``."""
    require("libvirtd", "virsh", "setpriv")
    with private_libvirtd(tcp=True) as running:
        running.define_pool("tpool")
        yield running


@dataclass
class OurServer:
    """Our storage server on a Unix socket, serving ``directory`` as pool ``images``."""

    directory: Path
    socket: Path
    running: StorageServerThread

    @property
    def uri(self) -> str:
        return f"qemu+unix:///session?socket={self.socket}"


@pytest.fixture
def our_server(tmp_path: Path) -> Iterator[OurServer]:
    directory = tmp_path / "images"
    directory.mkdir()
    sock = tmp_path / "libvirt-sock"
    server = StorageServer(f"unix:{sock}", directory)
    with StorageServerThread(server) as running:
        yield OurServer(directory, sock, running)


@pytest.fixture
def holes_supported(tmp_path: Path) -> None:
    if not supports_holes(str(tmp_path)):
        pytest.skip(f"the filesystem of {tmp_path} does not report holes (SEEK_DATA)")
