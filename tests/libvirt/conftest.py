"""Fixtures for the libvirt tests: one private libvirtd per module, our storage server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from libvirt_servers import OurServer, TlsLibvirtd
from realpeers import NOBODY, Libvirtd, free_tcp_port, private_libvirtd, require, stop_process
from sources import debian_source

from xdrstream.libvirt import protocol as protocols
from xdrstream.libvirt.storage_server import StorageServer
from xdrstream.transport.sparse import supports_holes


@pytest.fixture(scope="module")
def tree() -> Path:
    """libvirt 9.0's source tree (Debian bookworm), for its own .x files."""
    return debian_source("libvirt", "bookworm")


@pytest.fixture(scope="module")
def real(tree: Path) -> protocols.RemoteProtocol:
    """libvirt's whole remote protocol, compiled from that tree's .x files."""
    return protocols.load(tree)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Libvirtd]:
    """A private libvirtd (Unix socket and TCP) with the directory pool ``tpool``."""
    require("libvirtd", "virsh", "setpriv")
    with private_libvirtd(tcp=True) as running:
        running.define_pool("tpool")
        yield running


@pytest.fixture
def our_server(tmp_path: Path) -> Iterator[OurServer]:
    directory = tmp_path / "images"
    directory.mkdir()
    sock = tmp_path / "libvirt-sock"
    server = StorageServer(f"unix:{sock}", directory)
    with server as running:
        yield OurServer(directory, sock, running)


@pytest.fixture
def holes_supported(tmp_path: Path) -> None:
    if not supports_holes(str(tmp_path)):
        pytest.skip(f"the filesystem of {tmp_path} does not report holes (SEEK_DATA)")


def _tls_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def tls_daemon() -> Iterator[TlsLibvirtd]:
    """libvirtd with listen_tls (server certificate for 127.0.0.1, client certificates
    checked against the same CA), run like realpeers' daemon (uid 65534, session mode)."""
    require("libvirtd", "setpriv")
    trustme = pytest.importorskip("trustme")
    root = Path(tempfile.mkdtemp(prefix="xdrstream-libvirtd-tls-"))
    try:
        for sub in ("sock", "home", "run", "config", "cache", "pki"):
            (root / sub).mkdir()
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1")
        client = ca.issue_cert("client.example")
        pki = root / "pki"
        ca.cert_pem.write_to_path(str(pki / "ca.pem"))
        server.cert_chain_pems[0].write_to_path(str(pki / "server.pem"))
        server.private_key_pem.write_to_path(str(pki / "server-key.pem"))
        client.cert_chain_pems[0].write_to_path(str(pki / "client.pem"))
        client.private_key_pem.write_to_path(str(pki / "client-key.pem"))
        for path in [root, *root.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)
        os.chmod(root, 0o755)
        port = free_tcp_port()
        conf = root / "libvirtd.conf"
        conf.write_text(
            f'unix_sock_dir = "{root / "sock"}"\n'
            'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
            "listen_tcp = 0\nlisten_tls = 1\n"
            f'listen_addr = "127.0.0.1"\ntls_port = "{port}"\nauth_tls = "none"\n'
            f'key_file = "{pki / "server-key.pem"}"\ncert_file = "{pki / "server.pem"}"\n'
            f'ca_file = "{pki / "ca.pem"}"\n'
            f'log_outputs = "3:file:{root / "libvirtd.log"}"\n'
        )
        env = [
            f"HOME={root / 'home'}",
            f"XDG_RUNTIME_DIR={root / 'run'}",
            f"XDG_CONFIG_HOME={root / 'config'}",
            f"XDG_CACHE_HOME={root / 'cache'}",
        ]
        command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        process = subprocess.Popen(
            [*command, "env", *env, "libvirtd", "-f", str(conf), "--listen"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while not _tls_listening(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (root / "libvirtd.log").read_text(errors="replace")[-2000:]
                    pytest.fail(f"libvirtd with TLS did not start: {log}")
                time.sleep(0.05)
            yield TlsLibvirtd(
                root, port, pki / "ca.pem", pki / "client.pem", pki / "client-key.pem"
            )
        finally:
            stop_process(process)
    finally:
        shutil.rmtree(root, ignore_errors=True)
