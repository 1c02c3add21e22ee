"""Real QEMU as the stream endpoint: save a 16 MiB guest into a pipe, restore it into another."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
from qemu_oracle import save
from test_cli_support import child_pids, open_fds

from xdrstream.endpoints.qemu import QemuEndpoint, QemuLauncher, QMPClient, QMPError, find_qemu
from xdrstream.endpoints.qemu_stub import StubLauncher, iter_real_format, synthetic_bytes
from xdrstream.endpoints.sink import EndpointError, EndpointLauncher

pytestmark = [
    pytest.mark.real_peers,
    pytest.mark.skipif(find_qemu() is None, reason="not installed: qemu-system-x86_64"),
]

QEMU = QemuLauncher()


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """No fd, no QEMU, no zombie outlives a test."""
    before, children = open_fds(), child_pids()
    yield
    leaked = {fd for fd in open_fds() - before if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not leaked
    assert not child_pids() - children


def restore(launcher: EndpointLauncher, data: bytes) -> QemuEndpoint:
    endpoint = launcher.restore()
    assert isinstance(endpoint, QemuEndpoint)
    with endpoint:
        with contextlib.suppress(BrokenPipeError):  # QEMU gave up; the verdict says why
            endpoint.write(data)
        endpoint.wait(timeout=30)
    return endpoint


@pytest.fixture(scope="module")
def guest_stream() -> bytes:
    return save(QEMU)


def test_a_saved_guest_stream_starts_with_qevm_version_3(guest_stream: bytes) -> None:
    assert guest_stream[:8] == bytes.fromhex("5145564d00000003")
    assert b"pc-i440fx-7.2" in guest_stream[:64]
    assert len(guest_stream) > 100_000  # the RAM section of a 16 MiB guest


def test_the_saved_stream_restores_into_another_qemu(guest_stream: bytes) -> None:
    endpoint = restore(QEMU, guest_stream)
    assert endpoint.result is not None
    assert endpoint.result.ok, endpoint.result.error
    assert endpoint.result.exit_code == 0  # quit after the verdict
    assert endpoint.process.returncode == 0


def test_a_truncated_stream_fails_the_restore_with_qemus_reason(guest_stream: bytes) -> None:
    result = restore(QEMU, guest_stream[: len(guest_stream) // 2]).result
    assert result is not None and not result.ok and result.exit_code == 1
    assert result.error is not None and "load of migration failed" in result.error


def test_a_stream_with_bad_magic_fails_the_restore(guest_stream: bytes) -> None:
    result = restore(QEMU, b"X" + guest_stream[1:]).result
    assert result is not None and not result.ok
    assert result.error is not None and "Not a migration stream" in result.error


def test_real_qemu_rejects_the_stubs_synthetic_machine() -> None:
    result = restore(QEMU, synthetic_bytes(1 << 20, 0)).result
    assert result is not None and not result.ok
    assert result.error is not None and "xdrstream-synthetic" in result.error


def test_the_stub_accepts_a_real_save_in_both_modes(guest_stream: bytes) -> None:
    for check in ("header", "full"):
        with StubLauncher(check=check).restore() as endpoint:  # type: ignore[arg-type]
            endpoint.write(guest_stream)
            result = endpoint.wait(timeout=30)
        assert result.ok, result.error
        assert result.bytes == len(guest_stream)


def test_the_stub_rejects_a_real_save_cut_short_and_says_where(guest_stream: bytes) -> None:
    cut = len(guest_stream) // 3  # inside the RAM section
    with StubLauncher().restore() as endpoint:
        endpoint.write(guest_stream[:cut])
        result = endpoint.wait(timeout=30)
    assert not result.ok and result.error is not None
    assert f"truncated: the stream ends in PART section 2 'ram' (at byte {cut})" in result.error


@pytest.mark.parametrize("zero_every", [0, 4])
def test_real_qemu_accepts_the_generated_real_format_stream(zero_every: int) -> None:
    data = b"".join(bytes(view) for view in iter_real_format(16 << 20, 2, zero_every))
    result = restore(QemuLauncher(machine="pc-i440fx-7.2", memory_mib=16), data).result
    assert result is not None and result.ok, result.error


def test_a_save_whose_reader_gives_up_fails() -> None:
    with QEMU.save() as endpoint:
        assert endpoint.readinto(bytearray(8)) == 8
        result = endpoint.wait(timeout=30)
    assert not result.ok
    assert result.error is not None and "migration failed" in result.error


def test_abort_kills_qemu_mid_restore(guest_stream: bytes) -> None:
    with QEMU.restore() as endpoint:
        endpoint.write(guest_stream[:1000])
        result = endpoint.abort("client disconnected")
    assert not result.ok and result.error == "client disconnected"
    assert endpoint.process.returncode is not None


def test_qmp_errors_are_reported_with_their_class() -> None:
    with QEMU.restore() as endpoint:
        assert isinstance(endpoint, QemuEndpoint)
        with pytest.raises(QMPError, match="CommandNotFound"):
            endpoint.qmp.execute("no-such-command")
        assert isinstance(endpoint.qmp, QMPClient)
        assert endpoint.qmp.greeting["QMP"]["version"]["qemu"]["major"] >= 7


def test_a_missing_qemu_binary_is_a_clear_error() -> None:
    with pytest.raises(EndpointError, match="QEMU not found: '/nonexistent/qemu'"):
        QemuLauncher(binary="/nonexistent/qemu").restore()


def test_a_qemu_that_fails_to_start_is_a_clear_error() -> None:
    broken = QemuLauncher(extra_args=("-no-such-option",))
    with pytest.raises(EndpointError, match="QEMU exited with code 1 before QMP was up") as info:
        broken.save()
    assert "invalid option" in str(info.value)  # QEMU's own words, from its stderr
