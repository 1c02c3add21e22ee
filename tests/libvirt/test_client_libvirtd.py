"""Our libvirt client against a private real libvirtd (issue 7, client side).

The volume's content and hole layout are checked in the pool directory itself and through
`virsh vol-download` as an independent reader.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest
from libvirt_helpers import KiB, MiB, layout, make_file, make_random_file, sha256, virsh
from libvirt_servers import TlsLibvirtd
from realpeers import Libvirtd, require, rows_from_tshark, tshark_capture, tshark_fields

from xdrstream.libvirt import LibvirtClient, LibvirtError, remote
from xdrstream.libvirt.errors import VIR_ERR_NO_STORAGE_VOL, VIR_FROM_STORAGE
from xdrstream.transport import tls

pytestmark = [pytest.mark.real_peers, pytest.mark.timeout(60)]

SPARSE_SIZE = 3 * MiB
# data at the start, in the middle and up to the end: holes before, between and none after
SPARSE_PIECES = [(0, 96 * KiB), (MiB, 40 * KiB), (2 * MiB + 512 * KiB, 64 * KiB)]


def _create_volume(daemon: Libvirtd, name: str, size: int, allocation: int = 0) -> Path:
    daemon.virsh(
        "vol-create-as",
        "tpool",
        name,
        str(size),
        "--allocation",
        str(allocation),
        "--format",
        "raw",
    )
    return daemon.root / "pool-tpool" / name


def _readable_dir(daemon: Libvirtd, name: str) -> Path:
    """A directory both we and virsh (run as root) can use; libvirtd never touches it."""
    return daemon.shared_dir(name)


@pytest.mark.usefixtures("holes_supported")
@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
def test_sparse_upload_and_download_keep_content_and_holes(
    daemon: Libvirtd, tcp: bool, tmp_path: Path
) -> None:
    name = f"sparse-{'tcp' if tcp else 'unix'}"
    volume_file = _create_volume(daemon, name, SPARSE_SIZE)
    source = tmp_path / "source.bin"
    make_file(source, SPARSE_SIZE, SPARSE_PIECES)
    with LibvirtClient.open(daemon.uri(tcp=tcp)) as client:
        vol = client.lookup_volume("tpool", name)
        sent = client.upload(vol, source, sparse=True, checksum=True)
        assert sent.sha256 == sha256(source)
        assert sent.holes == SPARSE_SIZE - sum(length for _, length in SPARSE_PIECES)
        # the pool's file is what we sent, holes included
        assert sha256(volume_file) == sha256(source)
        assert layout(volume_file) == layout(source)
        # and so says virsh, reading it back sparse
        check = _readable_dir(daemon, f"check-{name}") / "virsh.bin"
        result = virsh(
            daemon.uri(tcp=tcp), "vol-download", "--sparse", "--pool", "tpool", name, str(check)
        )
        assert result.returncode == 0, result.stderr
        assert sha256(check) == sha256(source)
        assert layout(check) == layout(source)
        # our download recreates the holes
        out = tmp_path / "out.bin"
        got = client.download(vol, out, sparse=True, checksum=True)
    assert got.sha256 == sha256(source) == sha256(out)
    assert got.holes == sent.holes
    assert layout(out) == layout(source)


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
def test_dense_upload_and_download_match_virsh(daemon: Libvirtd, tcp: bool, tmp_path: Path) -> None:
    name = f"dense-{'tcp' if tcp else 'unix'}"
    size = 3 * MiB + 12345  # not a multiple of the 262120-byte frames
    volume_file = _create_volume(daemon, name, size, allocation=size)
    source = tmp_path / "dense.bin"
    make_random_file(source, size)
    with LibvirtClient.open(daemon.uri(tcp=tcp)) as client:
        vol = client.lookup_volume("tpool", name)
        sent = client.upload(vol, source, checksum=True)
        assert (sent.data, sent.holes) == (size, 0)
        assert sha256(volume_file) == sha256(source)
        check = _readable_dir(daemon, f"check-{name}") / "virsh.bin"
        result = virsh(daemon.uri(tcp=tcp), "vol-download", "--pool", "tpool", name, str(check))
        assert result.returncode == 0, result.stderr
        assert sha256(check) == sha256(source)
        out = tmp_path / "out.bin"
        got = client.download(vol, out, checksum=True)
    assert got.sha256 == sha256(source) == sha256(out)
    assert (got.data, got.holes) == (size, 0)


def test_volume_lookups_and_listing(daemon: Libvirtd) -> None:
    volume_file = _create_volume(daemon, "listed", MiB, allocation=MiB)
    with LibvirtClient.open(daemon.uri()) as client:
        assert "tpool" in [pool.name for pool in client.list_pools()]
        pool = client.lookup_pool("tpool")
        assert client.pool_info(pool).state == 2  # running
        vol = client.lookup_volume(pool, "listed")
        assert vol.key == str(volume_file)
        assert client.volume_path(vol) == str(volume_file)
        assert "listed" in [v.name for v in client.list_volumes(pool)]
        info = client.volume_info(vol)
        assert (info.type, info.capacity) == (0, MiB)
        assert client.uri() == "qemu:///session"


def test_a_missing_volume_raises_libvirts_error(daemon: Libvirtd) -> None:
    with LibvirtClient.open(daemon.uri()) as client:
        with pytest.raises(LibvirtError) as caught:
            client.lookup_volume("tpool", "nosuch")
        # the connection is still usable after the error
        assert client.lookup_pool("tpool").name == "tpool"
    error = caught.value
    assert (error.code, error.domain) == (VIR_ERR_NO_STORAGE_VOL, VIR_FROM_STORAGE) == (50, 18)
    assert error.message == "Storage volume not found: no storage vol with matching name 'nosuch'"
    assert error.error.level == 2


def test_a_missing_pool_raises_libvirts_error(daemon: Libvirtd) -> None:
    with LibvirtClient.open(daemon.uri()) as client, pytest.raises(LibvirtError) as caught:
        client.lookup_pool("nopool")
    assert (caught.value.code, caught.value.domain) == (49, 18)
    assert "nopool" in caught.value.message


def test_screenshot_equals_what_virsh_gets(daemon: Libvirtd, tmp_path: Path) -> None:
    ours = tmp_path / "ours.png"
    with LibvirtClient.open(daemon.uri("test")) as client:
        mime = client.screenshot("test", ours)
    assert mime == "image/png"
    theirs = _readable_dir(daemon, "shots") / "virsh.png"
    result = virsh(daemon.uri("test"), "screenshot", "test", str(theirs))
    assert result.returncode == 0, result.stderr
    assert ours.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sha256(ours) == sha256(theirs)


def test_an_upload_longer_than_asked_fails_with_the_daemons_stream_error(
    daemon: Libvirtd, tmp_path: Path
) -> None:
    _create_volume(daemon, "short", MiB, allocation=MiB)
    source = tmp_path / "big.bin"
    make_random_file(source, 2 * MiB)
    with LibvirtClient.open(daemon.uri()) as client:
        vol = client.lookup_volume("tpool", "short")
        with pytest.raises(LibvirtError) as caught:
            client.upload(vol, source, length=MiB // 2)
        assert caught.value.message  # libvirtd says why (no space left in the range)
        # the stream failed, the connection did not
        assert client.volume_info(vol).capacity == MiB
    assert os.path.getsize(source) == 2 * MiB


def test_tls_connection_with_a_client_certificate(tls_daemon: TlsLibvirtd) -> None:
    context = tls.client_context(tls_daemon.ca, tls_daemon.client_cert, tls_daemon.client_key)
    with LibvirtClient.open(tls_daemon.uri, tls=context) as client:
        assert client.uri() == "qemu:///session"
        assert client.keepalive_supported
        with pytest.raises(LibvirtError) as caught:
            client.lookup_pool("nopool")
    assert (caught.value.code, caught.value.domain) == (49, 18)


def test_tls_refused_without_a_client_certificate(tls_daemon: TlsLibvirtd) -> None:
    """libvirtd refuses a client without a certificate: no confirmation byte arrives."""
    context = tls.client_context(tls_daemon.ca)
    with pytest.raises(LibvirtError) as caught:
        LibvirtClient.open(tls_daemon.uri, tls=context, timeout=10).close()
    assert (caught.value.code, caught.value.domain) == (39, 7)
    assert "server verification" in caught.value.message


def test_keepalive_pings_are_answered_by_libvirtd(daemon: Libvirtd, tmp_path: Path) -> None:
    """Our client asks for the keepalive feature, PINGs while idle, libvirtd PONGs."""
    require("tshark")
    assert daemon.tcp_port is not None
    with (
        tshark_capture(daemon.tcp_port, tmp_path / "cap") as capture,
        LibvirtClient.open(daemon.uri(tcp=True), keepalive=0.3) as client,
    ):
        assert client.keepalive_supported
        time.sleep(1.2)
        assert client.lookup_pool("tpool").name == "tpool"
    rows = rows_from_tshark(tshark_fields(capture.path, daemon.tcp_port))
    keepalive = Counter(row[3] for row in rows if row[1] == 0x6B656570)
    assert keepalive[1] >= 2  # our PINGs
    assert keepalive[2] == keepalive[1]  # libvirtd's PONGs
    calls = [row[3] for row in rows if row[1] == remote.PROGRAM and row[4] == 0]
    assert calls[:3] == [remote.AUTH_LIST, remote.CONNECT_SUPPORTS_FEATURE, remote.CONNECT_OPEN]
    assert calls[-1] == remote.CONNECT_CLOSE
