"""Unmodified virsh against our storage server (issue 7, server side)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from libvirt_helpers import KiB, MiB, layout, make_file, make_random_file, sha256, virsh
from libvirt_servers import OurServer
from realpeers import (
    Libvirtd,
    require,
    rows_from_tshark,
    stop_process,
    tshark_capture,
    tshark_fields,
)

from xdrstream.libvirt import LibvirtClient, LibvirtError, remote
from xdrstream.libvirt.storage_server import StorageServer
from xdrstream.protocol import Procedure, Program, programs_from_schema
from xdrstream.transport import tls
from xdrstream.transport.blocking import BlockingConnection
from xdrstream.transport.errors import RemoteFailure

pytestmark = [pytest.mark.real_peers, pytest.mark.timeout(60)]


@pytest.fixture(autouse=True)
def _virsh_installed() -> None:
    require("virsh")


def test_virsh_uploads_and_downloads_through_our_server(
    our_server: OurServer, tmp_path: Path
) -> None:
    volume = our_server.directory / "disk.img"
    volume.touch()
    source = tmp_path / "source.bin"
    make_random_file(source, 5 * MiB + 7)
    result = virsh(our_server.uri, "vol-upload", "--pool", "images", "disk.img", str(source))
    assert result.returncode == 0, result.stderr
    assert sha256(volume) == sha256(source)
    out = tmp_path / "out.bin"
    result = virsh(our_server.uri, "vol-download", "--pool", "images", "disk.img", str(out))
    assert result.returncode == 0, result.stderr
    assert sha256(out) == sha256(source)


@pytest.mark.usefixtures("holes_supported")
def test_virsh_sparse_upload_and_download_keep_the_holes(
    our_server: OurServer, tmp_path: Path
) -> None:
    volume = our_server.directory / "sparse.img"
    volume.touch()
    source = tmp_path / "sparse.bin"
    make_file(source, 4 * MiB, [(128 * KiB, 64 * KiB), (2 * MiB, 300 * KiB)])
    assert [kind for kind, _, _ in layout(source)] == ["hole", "data", "hole", "data", "hole"]
    result = virsh(
        our_server.uri, "vol-upload", "--sparse", "--pool", "images", "sparse.img", str(source)
    )
    assert result.returncode == 0, result.stderr
    assert sha256(volume) == sha256(source)
    assert layout(volume) == layout(source)
    out = tmp_path / "out.bin"
    result = virsh(
        our_server.uri, "vol-download", "--sparse", "--pool", "images", "sparse.img", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert sha256(out) == sha256(source)
    assert layout(out) == layout(source)


def test_virsh_lists_pools_and_volumes(our_server: OurServer) -> None:
    make_random_file(our_server.directory / "a.img", 4096)
    make_file(our_server.directory / "b.img", 2 * MiB, [(0, 4096)])
    (our_server.directory / ".hidden").touch()
    (our_server.directory / "subdir").mkdir()
    result = virsh(our_server.uri, "vol-list", "--pool", "images")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()]
    assert rows == [
        ["a.img", str(our_server.directory / "a.img")],
        ["b.img", str(our_server.directory / "b.img")],
    ]
    result = virsh(our_server.uri, "vol-list", "--pool", "images", "--details")
    assert result.returncode == 0, result.stderr
    assert re.search(r"b\.img\s+\S+\s+file\s+2\.00 MiB", result.stdout), result.stdout
    result = virsh(our_server.uri, "pool-list", "--all", "--details")
    assert result.returncode == 0, result.stderr
    assert re.match(r"\s*images\s+running\s+no\s+yes", result.stdout), result.stdout
    result = virsh(our_server.uri, "pool-info", "images")
    assert result.returncode == 0, result.stderr
    assert re.search(r"State:\s+running", result.stdout)
    result = virsh(our_server.uri, "vol-info", "--pool", "images", "b.img")
    assert result.returncode == 0, result.stderr
    assert re.search(r"Capacity:\s+2\.00 MiB", result.stdout)


def test_virsh_reports_a_missing_volume_like_libvirtd(our_server: OurServer) -> None:
    result = virsh(our_server.uri, "vol-info", "--pool", "images", "nosuch")
    assert result.returncode == 1
    assert "Storage volume not found: no storage vol with matching" in result.stderr


@pytest.mark.parametrize(
    ("command", "procedure"),
    [(["nodeinfo"], 6), (["pool-define-as", "x", "dir", "--target", "/tmp"], 77)],
    ids=["nodeinfo", "pool-define-as"],
)
def test_an_unknown_procedure_is_a_clean_error_not_a_hang(
    our_server: OurServer, command: list[str], procedure: int
) -> None:
    started = time.monotonic()
    result = virsh(our_server.uri, *command, timeout=20)
    assert result.returncode == 1
    assert f"error: unknown procedure: {procedure}" in result.stderr
    assert time.monotonic() - started < 10
    # the server is still there for the next client
    assert virsh(our_server.uri, "pool-list").returncode == 0


def _remote_with(procedure: int) -> Program:
    """The remote program as our schema declares it, plus one procedure it does not."""
    program = programs_from_schema(remote.schema())[0]
    procedures = {**program.procedures, procedure: Procedure(procedure, "PROBE")}
    return Program(program.number, program.version, procedures, program.name)


def _error_for_unknown(address: str, procedure: int) -> RemoteFailure:
    conn = BlockingConnection.connect(address, [_remote_with(procedure)])
    with conn, pytest.raises(RemoteFailure) as caught:
        conn.call(remote.PROGRAM, remote.VERSION, procedure)
    return caught.value


def test_the_unknown_procedure_error_body_equals_libvirtds(
    daemon: Libvirtd, our_server: OurServer
) -> None:
    theirs = _error_for_unknown(f"unix:{daemon.socket_path}", 9999)
    ours = _error_for_unknown(f"unix:{our_server.socket}", 9999)
    assert (theirs.error.code, theirs.error.domain) == (39, 7)  # VIR_ERR_RPC, VIR_FROM_RPC
    assert ours.error == theirs.error


def test_a_missing_volume_error_body_equals_libvirtds(
    daemon: Libvirtd, our_server: OurServer
) -> None:
    errors = []
    for uri, pool in ((daemon.uri(), "tpool"), (our_server.uri, "images")):
        with LibvirtClient.open(uri) as client:
            with pytest.raises(LibvirtError) as caught:
                client.lookup_volume(pool, "nosuch")
            errors.append(caught.value.error)
    assert errors[0] == errors[1]


def _interactive_virsh(uri: str, pause: float) -> subprocess.CompletedProcess[str]:
    """virsh with keepalive every 1 s (2 missed = dead): a command, `pause` s idle, another."""
    process = subprocess.Popen(
        ["virsh", "-q", "-k", "1", "-K", "2", "-c", uri],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdin is not None
        process.stdin.write("pool-list\n")
        process.stdin.flush()
        time.sleep(pause)
        stdout, stderr = process.communicate("vol-list --pool images\nquit\n", timeout=20)
    finally:
        stop_process(process)  # type: ignore[arg-type]
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture
def tcp_server(tmp_path: Path) -> Iterator[tuple[OurServer, int]]:
    directory = tmp_path / "images"
    directory.mkdir()
    with StorageServer("tcp:127.0.0.1:0", directory) as running:
        yield OurServer(directory, tmp_path / "unused", running), running.address.port


def test_virsh_keepalive_pings_are_answered(
    tcp_server: tuple[OurServer, int], tmp_path: Path
) -> None:
    require("tshark")
    server, port = tcp_server
    make_random_file(server.directory / "v.img", 4096)
    uri = f"qemu+tcp://127.0.0.1:{port}/session"
    with tshark_capture(port, tmp_path / "cap") as capture:
        result = _interactive_virsh(uri, pause=3.5)
    assert result.returncode == 0, result.stderr
    assert "v.img" in result.stdout
    assert "keepalive" not in result.stderr
    rows = rows_from_tshark(tshark_fields(capture.path, port))
    keepalive = [row for row in rows if row[1] == 0x6B656570]
    pings = [row for row in keepalive if row[3] == 1]
    pongs = [row for row in keepalive if row[3] == 2]
    assert len(pings) >= 2 and len(pongs) == len(pings)
    assert all(row[4] == 2 and row[5] == 0 and row[0] == 28 for row in keepalive)
    # virsh asked for the feature before opening, and closed cleanly at the end
    calls = [row[3] for row in rows if row[1] == remote.PROGRAM and row[4] == 0]
    assert calls[:3] == [remote.AUTH_LIST, remote.CONNECT_SUPPORTS_FEATURE, remote.CONNECT_OPEN]
    assert calls[-2:] == [remote.CONNECT_UNREGISTER_CLOSE_CALLBACK, remote.CONNECT_CLOSE]


def test_xdrstream_serve_libvirt_storage_serves_virsh(tmp_path: Path) -> None:
    directory = tmp_path / "pool"
    directory.mkdir()
    (directory / "disk.img").touch()
    sock = tmp_path / "sock"
    command = [sys.executable, "-m", "xdrstream.cli", "serve", "--libvirt-storage", str(directory)]
    process = subprocess.Popen(
        [*command, "--listen", f"unix:{sock}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert '"listening"' in line and '"pool": "pool"' in line, line
        source = tmp_path / "source.bin"
        make_random_file(source, MiB + 1)
        uri = f"qemu+unix:///session?socket={sock}"
        result = virsh(uri, "vol-upload", "--pool", "pool", "disk.img", str(source))
        assert result.returncode == 0, result.stderr
        assert sha256(directory / "disk.img") == sha256(source)
    finally:
        stop_process(process)  # type: ignore[arg-type]
        if process.stdout is not None:
            process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()
    assert process.returncode == 0
    assert not os.path.exists(sock)


def test_virsh_over_tls_with_client_certificates(tmp_path: Path) -> None:
    """virsh (gnutls) against our server over TLS: certificates both ways, libvirt's
    confirmation byte after the handshake, then an upload."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("client.example")
    pki = tmp_path / "pki"  # virsh's pkipath= layout
    pki.mkdir()
    ca.cert_pem.write_to_path(str(pki / "cacert.pem"))
    client_cert.cert_chain_pems[0].write_to_path(str(pki / "clientcert.pem"))
    client_cert.private_key_pem.write_to_path(str(pki / "clientkey.pem"))
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    context = tls.server_context(
        tmp_path / "server.pem", tmp_path / "server.pem", pki / "cacert.pem", True
    )
    directory = tmp_path / "images"
    directory.mkdir()
    (directory / "disk.img").touch()
    source = tmp_path / "source.bin"
    make_random_file(source, MiB + 3)
    server = StorageServer("tcp:127.0.0.1:0", directory, tls=context)
    with server as running:
        uri = f"qemu+tls://127.0.0.1:{running.address.port}/session?pkipath={pki}"
        result = virsh(uri, "vol-upload", "--pool", "images", "disk.img", str(source))
        assert result.returncode == 0, result.stderr
        assert sha256(directory / "disk.img") == sha256(source)
        # without a client certificate the handshake is refused: a clean error, no hang
        (pki / "clientcert.pem").unlink()
        (pki / "clientkey.pem").unlink()
        result = virsh(uri, "pool-list", timeout=20)
        assert result.returncode == 1
        assert "error" in result.stderr
