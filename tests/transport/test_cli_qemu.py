"""A real QEMU guest saved and restored through `xdrstream serve --qemu` and the CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from test_cli_support import Leaks, run_cli, serving

from xdrstream.endpoints.qemu import find_qemu
from xdrstream.endpoints.qemu_stub import HEADER

pytestmark = [
    pytest.mark.real_peers,
    pytest.mark.skipif(find_qemu() is None, reason="not installed: qemu-system-x86_64"),
]


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_a_qemu_guest_is_saved_and_restored_into_another_qemu(
    leaks: Leaks, tmp_path: Path, variant: int
) -> None:
    qemu = find_qemu()
    assert qemu is not None
    image = tmp_path / "guest.qevm"
    with serving(leaks, f"unix:{tmp_path}/x.sock", "--qemu", qemu) as server:
        connect = ["--connect", server.address, "--variant", str(variant)]
        saved = run_cli(leaks, "save", str(image), *connect, "--sha256", timeout=60)
        assert saved.code == 0, saved.stderr
        data = image.read_bytes()
        assert data.startswith(HEADER)  # QEVM, version 3: QEMU's migration stream
        assert saved.record["bytes"] == len(data)
        assert saved.record["sha256"] == hashlib.sha256(data).hexdigest()
        assert server.endpoint(60)["ok"] is True  # QMP query-migrate: completed

        restored = run_cli(leaks, "restore", str(image), *connect, timeout=60)
        assert restored.code == 0, restored.stderr
        assert restored.record["bytes"] == len(data)
        assert server.endpoint(60)["ok"] is True  # the other QEMU: completed, paused


def test_qemu_rejecting_a_damaged_stream_fails_the_restore(leaks: Leaks, tmp_path: Path) -> None:
    qemu = find_qemu()
    assert qemu is not None
    image = tmp_path / "guest.qevm"
    with serving(leaks, f"unix:{tmp_path}/x.sock", "--qemu", qemu) as server:
        saved = run_cli(leaks, "save", str(image), "--connect", server.address, timeout=60)
        assert saved.code == 0, saved.stderr
        server.endpoint(60)
        data = image.read_bytes()
        image.write_bytes(data[: len(data) // 2])  # QEMU sees the stream end mid-section
        restored = run_cli(leaks, "restore", str(image), "--connect", server.address, timeout=60)
        assert restored.code == 1
        assert restored.error.startswith("xdrstream restore: error: server error: restore failed")
        assert server.endpoint(60)["ok"] is False
