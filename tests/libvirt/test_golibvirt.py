"""go-libvirt, an independent Go implementation of libvirt's protocol, against our storage
server (issue 16 part 0): connect (its CONNECT_OPEN carries the optional-name flag as the
word 0x01000000, which libvirtd accepts), list pools and volumes, upload, download."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from golibvirt import build_go_client
from libvirt_helpers import MiB, make_random_file, sha256
from libvirt_servers import OurServer
from realpeers import Libvirtd

pytestmark = [pytest.mark.real_peers, pytest.mark.timeout(120)]

PROGRAM = Path(__file__).parent / "golibvirt"


def run_client(sock: Path, pool: str, volume: str, source: Path, out: Path) -> dict[str, object]:
    client = build_go_client(PROGRAM)
    done = subprocess.run(
        [str(client), str(sock), "qemu:///session", pool, volume, str(source), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


def test_go_libvirt_against_our_storage_server(our_server: OurServer, tmp_path: Path) -> None:
    (our_server.directory / "vol1").write_bytes(b"")
    (our_server.directory / "other").write_bytes(b"x")
    source, out = tmp_path / "in", tmp_path / "out"
    make_random_file(source, 3 * MiB + 12345)
    report = run_client(our_server.socket, "images", "vol1", source, out)
    assert report["pools"] == ["images"]
    assert report["volumes"] == ["other", "vol1"]
    assert sha256(our_server.directory / "vol1") == sha256(source)
    assert sha256(out) == sha256(source)


def test_go_libvirt_against_libvirtd(daemon: Libvirtd, tmp_path: Path) -> None:
    """The same client against the real daemon: what our server must match."""
    volume = "govol"
    daemon.virsh("vol-create-as", "tpool", volume, "4M", "--format", "raw", check=True)
    try:
        source, out = tmp_path / "in", tmp_path / "out"
        make_random_file(source, 4 * MiB)
        report = run_client(daemon.socket_path, "tpool", volume, source, out)
        assert "tpool" in report["pools"]  # type: ignore[operator]
        assert volume in report["volumes"]  # type: ignore[operator]
        assert sha256(out) == sha256(source)
    finally:
        daemon.virsh("vol-delete", "--pool", "tpool", volume, check=False)
