"""A real QEMU 7.2 save through `xdrstream serve` with the default stub (issue 11).

The save is made by real QEMU (a pc-i440fx-7.2 guest); restoring it needs no QEMU: the
stub judges it as QEMU would, through every variant. `serve --save-from FILE` makes the
stub replay it for `xdrstream save`, and the saved copy restores into real QEMU again.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest
from test_cli_support import Leaks, run_cli, serving

from xdrstream.endpoints.qemu import QemuLauncher, find_qemu

pytestmark = [
    pytest.mark.real_peers,
    pytest.mark.skipif(find_qemu() is None, reason="not installed: qemu-system-x86_64"),
]

QEMU = QemuLauncher(machine="pc-i440fx-7.2", memory_mib=16)


@pytest.fixture(scope="module")
def real_save(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("real") / "guest.state"
    with QEMU.save() as endpoint:
        buffer = bytearray(1 << 16)
        with open(path, "wb") as out:
            while count := endpoint.readinto(buffer):
                out.write(buffer[:count])
        result = endpoint.wait(timeout=30)
    assert result.ok, result.error
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_serve_restores_a_real_save_through_every_variant(
    leaks: Leaks, tmp_path: Path, real_save: tuple[Path, str]
) -> None:
    path, digest = real_save
    size = path.stat().st_size
    with serving(leaks, f"unix:{tmp_path}/x.sock") as server:
        for variant in (1, 2, 3):
            done = run_cli(
                leaks, "restore", str(path), "--connect", server.address, "--variant",
                str(variant), "--sha256",
            )  # fmt: skip
            assert done.code == 0, done.stderr
            assert (done.record["bytes"], done.record["sha256"]) == (size, digest)
            verdict = server.endpoint()
            assert (verdict["ok"], verdict["bytes"], verdict["sha256"]) == (True, size, digest)


def test_serve_rejects_a_cut_real_save_with_the_place(
    leaks: Leaks, tmp_path: Path, real_save: tuple[Path, str]
) -> None:
    cut = tmp_path / "cut.state"
    cut.write_bytes(real_save[0].read_bytes()[:100_000])
    with serving(leaks, f"unix:{tmp_path}/x.sock") as server:
        done = run_cli(leaks, "restore", str(cut), "--connect", server.address)
        assert done.code == 1
        assert "truncated: the stream ends in PART section 2 'ram' (at byte 100000)" in (
            done.stderr
        )
        assert server.endpoint()["ok"] is False


@pytest.mark.parametrize("variant", [2, 3])
def test_a_real_save_replayed_by_the_stub_round_trips_into_real_qemu(
    leaks: Leaks, tmp_path: Path, real_save: tuple[Path, str], variant: int
) -> None:
    path, digest = real_save
    out = tmp_path / "saved.state"
    with serving(leaks, f"unix:{tmp_path}/x.sock", "--save-from", str(path)) as server:
        connect = ["--connect", server.address, "--variant", str(variant)]
        saved = run_cli(leaks, "save", str(out), *connect, "--sha256")
        assert saved.code == 0, saved.stderr
        assert saved.record["sha256"] == digest == hashlib.sha256(out.read_bytes()).hexdigest()
        assert server.endpoint()["ok"] is True
        restored = run_cli(leaks, "restore", str(out), *connect)  # back into the stub
        assert restored.code == 0, restored.stderr
        assert server.endpoint()["ok"] is True
    with QEMU.restore() as endpoint:  # and into a real QEMU: the guest state loads
        with contextlib.suppress(BrokenPipeError):
            endpoint.write(out.read_bytes())
        result = endpoint.wait(timeout=30)
    assert result.ok, result.error
