"""`make demo` (python -m xdrstream.demo) end to end, small: its checks pass, and fail loudly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_support import Leaks

from xdrstream.endpoints.qemu import find_qemu
from xdrstream.endpoints.qemu_stub import SECTION_SIZE

SIZE = 2 * SECTION_SIZE + 999
ROW = re.compile(r"V([123]) │ (restore|save)\s*│\s*(\d+) │\s*[\d.]+ │\s*[\d.]+ │ (yes|NO)")


def run_demo(leaks: Leaks, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**leaks.env(), "TMPDIR": str(tmp_path), "XDRSTREAM_DEMO_SIZE": str(SIZE)}
    return subprocess.run(
        [sys.executable, "-m", "xdrstream.demo", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_demo_moves_the_image_through_every_variant_and_checks_it(
    leaks: Leaks, tmp_path: Path
) -> None:
    done = run_demo(leaks, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "xs_restore_args(name='guest-01', size_hint=67108864, flags=0)" in out
    assert "00000008 67756573 742d3031 00000000 04000000 00000000" in out  # the XDR bytes
    assert "'procedure_name': 'XS_PROC_RESTORE_V2'" in out  # the frame, decoded again
    rows = {(int(v), d): (int(n), ok) for v, d, n, ok in ROW.findall(out)}
    assert rows == {
        (variant, direction): (SIZE, "yes")
        for variant in (1, 2, 3)
        for direction in ("restore", "save")
    }
    assert "10/10 checks passed" in out
    assert list(tmp_path.iterdir()) == []  # the image, the socket, the saves: all removed


def test_the_demo_fails_when_the_endpoints_fail(leaks: Leaks, tmp_path: Path) -> None:
    done = run_demo(leaks, tmp_path, "--server-arg=--stub-exit-code=5")
    assert done.returncode == 1
    out = done.stdout
    rows = ROW.findall(out)
    assert len(rows) == 6 and all(ok == "NO" for *_, ok in rows)
    assert "FAILED V2 restore: exit 1: xdrstream restore: error: server error:" in out
    assert "exit code 5" in out
    assert "4/10 checks passed" in out  # codec (2), server shutdown and socket (2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.real_peers
@pytest.mark.skipif(find_qemu() is None, reason="not installed: qemu-system-x86_64")
def test_the_demo_uses_a_real_qemu_save_where_qemu_is_installed(
    leaks: Leaks, tmp_path: Path
) -> None:
    env = {**leaks.env(), "TMPDIR": str(tmp_path)}
    env.pop("XDRSTREAM_DEMO_SIZE", None)  # no size: the real save
    done = subprocess.run(
        [sys.executable, "-m", "xdrstream.demo"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    assert "Image: a real QEMU 7.2 save of a pc-i440fx-7.2 guest" in out
    rows = ROW.findall(done.stdout)
    assert len(rows) == 6 and all(ok == "yes" for *_, ok in rows)
    assert len({int(n) for _, _, n, _ in rows}) == 1  # the save's size, each way
    assert "10/10 checks passed" in out
    assert list(tmp_path.iterdir()) == []
