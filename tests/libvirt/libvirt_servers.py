"""The libvirt tests' server handles, in a module of their own: test modules import them
by this unique name (``from conftest import`` can reach another directory's conftest)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xdrstream.libvirt.storage_server import StorageServer


@dataclass
class OurServer:
    """Our storage server on a Unix socket, serving ``directory`` as pool ``images``."""

    directory: Path
    socket: Path
    running: StorageServer

    @property
    def uri(self) -> str:
        return f"qemu+unix:///session?socket={self.socket}"


@dataclass
class TlsLibvirtd:
    """A private libvirtd listening for TLS on 127.0.0.1 (certificates from trustme)."""

    root: Path
    port: int
    ca: Path
    client_cert: Path
    client_key: Path

    @property
    def uri(self) -> str:
        return f"qemu+tls://127.0.0.1:{self.port}/session"
