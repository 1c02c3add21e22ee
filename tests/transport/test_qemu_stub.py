"""The QEMU stub: synthetic stream, incremental checker, the stub process and its CLI."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdrstream.endpoints import qemu_stub
from xdrstream.endpoints.qemu_stub import (
    MIN_SIZE,
    SECTION_SIZE,
    StreamChecker,
    StreamRejected,
    iter_synthetic,
    synthetic_bytes,
    synthetic_sha256,
)

STUB = [sys.executable, "-m", "xdrstream.endpoints.qemu_stub"]
SIZES = [MIN_SIZE, MIN_SIZE + 1, SECTION_SIZE, MIN_SIZE + SECTION_SIZE, 3 * SECTION_SIZE + 12345]


def check(data: bytes, mode: str = "full") -> StreamChecker:
    checker = StreamChecker(mode)  # type: ignore[arg-type]
    checker.feed(memoryview(data))
    checker.finish()
    return checker


def rejection(data: bytes, mode: str = "full") -> StreamRejected:
    with pytest.raises(StreamRejected) as info:
        check(data, mode)
    return info.value


# --- the synthetic stream -----------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_synthetic_stream_has_the_exact_size_and_a_qemu_header(size: int) -> None:
    data = synthetic_bytes(size, seed=5)
    assert len(data) == size
    assert data[:8] == bytes.fromhex("5145564d00000003")
    assert data[8] == qemu_stub.QEMU_VM_CONFIGURATION
    assert data[-1] == qemu_stub.QEMU_VM_EOF
    assert synthetic_sha256(size, 5) == hashlib.sha256(data).hexdigest()
    assert check(data).complete


def test_synthetic_stream_is_deterministic_per_size_and_seed() -> None:
    size = 2 * SECTION_SIZE + 99
    assert synthetic_bytes(size, 1) == synthetic_bytes(size, 1)
    assert synthetic_bytes(size, 1) != synthetic_bytes(size, 2)
    # the part of both that does not depend on the size is the same
    assert (
        synthetic_bytes(size, 1)[100:SECTION_SIZE] == synthetic_bytes(size + 1, 1)[100:SECTION_SIZE]
    )


def test_synthetic_sections_carry_consecutive_sequence_numbers() -> None:
    views = [bytes(view) for view in iter_synthetic(3 * SECTION_SIZE + MIN_SIZE, seed=0)]
    sequences = [struct.unpack_from(">Q", view, 9)[0] for view in views[1:4]]
    assert sequences == [0, 1, 2]


def test_a_stream_smaller_than_the_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_SIZE} bytes"):
        synthetic_bytes(MIN_SIZE - 1, 0)


def test_write_synthetic_writes_the_stream_and_returns_its_digest(tmp_path: Path) -> None:
    path = tmp_path / "image"
    digest = qemu_stub.write_synthetic(path, SECTION_SIZE + 7, seed=3)
    assert path.read_bytes() == synthetic_bytes(SECTION_SIZE + 7, 3)
    assert digest == synthetic_sha256(SECTION_SIZE + 7, 3)


# --- the checker --------------------------------------------------------------------------

STREAM = synthetic_bytes(2 * SECTION_SIZE + 1000, seed=9)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=40))
def test_checker_accepts_the_stream_however_it_is_split(cuts: list[int]) -> None:
    checker = StreamChecker()
    edges = [0, *sorted(cuts), len(STREAM)]
    view = memoryview(STREAM)
    for start, end in itertools.pairwise(edges):
        checker.feed(view[start:end])
    checker.finish()
    assert checker.complete and checker.offset == len(STREAM)


# a cut in each part of the stream: header, config, START, first PART (header, sequence,
# payload, footer), END, just before EOF
CUTS = [0, 3, 7, 10, 20, 40, 60, 89, 95, 100, 5000, SECTION_SIZE + 80, len(STREAM) - 1]


@pytest.mark.parametrize("cut", CUTS)
def test_checker_rejects_every_truncation(cut: int) -> None:
    error = rejection(STREAM[:cut])
    assert error.reason.startswith("truncated")
    assert error.offset == cut


def test_checker_names_where_a_truncated_stream_ended() -> None:
    assert "in the QEMU_VM_EOF marker" in str(rejection(STREAM[:-1]))
    assert "of 2098152 bytes, in the section payload" in str(rejection(STREAM[:5000]))


def patched(offset: int, new: bytes) -> bytes:
    return STREAM[:offset] + new + STREAM[offset + len(new) :]


@pytest.mark.parametrize(
    ("data", "message", "offset"),
    [
        (patched(0, b"QEVX"), "bad magic 0x51455658", 0),
        (patched(4, b"\0\0\0\4"), "unsupported stream version 4, expected 3", 4),
        (patched(8, b"\x05"), "unknown section type 0x05", 8),  # not synthetic: real rules
        (patched(32, b"\x02"), "expected QEMU_VM_SECTION_START", 32),
        (patched(61, b"\x7f"), "bad section footer 0x7f", 61),
        (patched(66, b"\x06"), "expected QEMU_VM_SECTION_PART 0x02 or _END 0x03, got 0x06", 66),
        (patched(71, b"\xff\xff\xff\xff"), "section body length 4294967295", 71),
        (patched(75, struct.pack(">Q", 1)), "section sequence 1, expected 0", 75),
        (STREAM[:-1] + b"\x01", "expected QEMU_VM_EOF 0x00, got 0x01", len(STREAM) - 1),
        (STREAM + b"\0", "trailing bytes after QEMU_VM_EOF", len(STREAM)),
    ],
)
def test_checker_rejects_a_damaged_stream_and_says_where(
    data: bytes, message: str, offset: int
) -> None:
    error = rejection(data)
    assert message in error.reason
    assert error.offset == offset


def test_checker_rejects_a_stream_whose_size_disagrees_with_start() -> None:
    # a stream claiming to be one byte longer than it is: the last section no longer fits
    data = patched(53, struct.pack(">Q", len(STREAM) + 1))
    assert "ended at 2098152 bytes, START declared 2098153" in str(rejection(data))


def test_header_mode_checks_only_magic_and_version() -> None:
    real_qemu_like = bytes.fromhex("5145564d00000003") + b"\x07\x00\x00\x00\x0dpc-i440fx-7.2"
    assert check(real_qemu_like, "header").offset == len(real_qemu_like)
    assert "bad magic" in rejection(b"QEVX\0\0\0\3", "header").reason
    assert "version 2" in rejection(b"QEVM\0\0\0\2", "header").reason
    assert "truncated" in rejection(b"QEVM\0\0", "header").reason


# --- the stub process ---------------------------------------------------------------------


def run_stub(args: list[str], data: bytes = b"") -> tuple[int, bytes, dict[str, object]]:
    """Run the stub with `data` on stdin; returns (exit code, stdout, report)."""
    result = subprocess.run(
        [*STUB, *args], input=data, capture_output=True, timeout=60, check=False
    )
    stream = args[0] == "outgoing"
    report_text = result.stderr if stream else result.stdout
    return result.returncode, result.stdout if stream else b"", json.loads(report_text)


def test_incoming_stub_accepts_a_whole_stream_and_reports_bytes_and_digest() -> None:
    code, _, report = run_stub(["incoming"], STREAM)
    assert code == 0
    assert report == {
        "role": "incoming",
        "ok": True,
        "bytes": len(STREAM),
        "sha256": hashlib.sha256(STREAM).hexdigest(),
        "error": None,
    }


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (patched(0, b"XXXX"), "bad magic"),
        (patched(4, b"\0\0\0\2"), "unsupported stream version 2"),
        (STREAM[:-100], "truncated"),
    ],
)
def test_incoming_stub_rejects_with_exit_code_and_reason(data: bytes, reason: str) -> None:
    code, _, report = run_stub(["incoming"], data)
    assert code == qemu_stub.EXIT_REJECTED
    assert report["ok"] is False
    assert reason in str(report["error"])


def test_outgoing_stub_writes_the_synthetic_stream(tmp_path: Path) -> None:
    size = 2 * SECTION_SIZE + 5
    code, stdout, report = run_stub(["outgoing", "--size", str(size), "--seed", "4"])
    assert code == 0
    assert stdout == synthetic_bytes(size, 4)
    assert report["bytes"] == size and report["sha256"] == synthetic_sha256(size, 4)


def test_report_can_go_to_a_file(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    result = subprocess.run(
        [*STUB, "incoming", "--report", str(report_path)],
        input=STREAM[:50],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == qemu_stub.EXIT_REJECTED and result.stdout == b""
    assert json.loads(report_path.read_text())["bytes"] == 50


def test_outgoing_stub_refuses_a_size_below_the_minimum() -> None:
    result = subprocess.run(
        [*STUB, "outgoing", "--size", "10"], capture_output=True, timeout=60, check=False
    )
    assert result.returncode == qemu_stub.EXIT_USAGE
    assert f"at least {MIN_SIZE} bytes" in result.stderr.decode()


def test_incoming_fail_after_stops_at_that_byte_with_the_chosen_exit_code() -> None:
    code, _, report = run_stub(["incoming", "--fail-after", "1000", "--exit-code", "7"], STREAM)
    assert code == 7
    assert report["bytes"] == 1000
    assert report["sha256"] == hashlib.sha256(STREAM[:1000]).hexdigest()
    assert "failed after 1000 bytes" in str(report["error"])


def test_outgoing_fail_after_emits_that_many_bytes_then_fails() -> None:
    code, stdout, report = run_stub(["outgoing", "--size", "5000000", "--fail-after", "123456"])
    assert code == qemu_stub.EXIT_FAULT
    assert stdout == synthetic_bytes(5000000, 0)[:123456]
    assert report["ok"] is False


def test_outgoing_close_early_sends_a_short_stream_and_exits_zero() -> None:
    code, stdout, report = run_stub(["outgoing", "--size", "5000000", "--close-early", "777"])
    assert code == 0 and report["ok"] is True
    assert stdout == synthetic_bytes(5000000, 0)[:777]
    # what a receiver makes of it
    assert rejection(stdout).reason.startswith("truncated")


def test_exit_code_alone_finishes_the_work_then_exits_with_it() -> None:
    code, _, report = run_stub(["incoming", "--exit-code", "9"], STREAM)
    assert code == 9
    assert report["bytes"] == len(STREAM) and report["ok"] is False


def test_stub_reads_from_a_given_fd_not_only_stdin() -> None:
    read_fd, write_fd = os.pipe()
    try:
        process = subprocess.Popen(
            [*STUB, "incoming", "--fd", str(read_fd)],
            pass_fds=(read_fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        os.close(read_fd)
        read_fd = -1
        with os.fdopen(write_fd, "wb") as writer:
            write_fd = -1
            writer.write(STREAM)
        stdout, _ = process.communicate(timeout=60)
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
    assert process.returncode == 0
    assert json.loads(stdout)["bytes"] == len(STREAM)


def test_outgoing_stub_replays_a_recorded_stream(tmp_path: Path) -> None:
    recorded = tmp_path / "recorded.state"
    qemu_stub.write_synthetic(recorded, SECTION_SIZE + 99, seed=6)
    code, stdout, report = run_stub(["outgoing", "--from", str(recorded)])
    assert code == 0
    assert stdout == recorded.read_bytes()
    assert report["bytes"] == SECTION_SIZE + 99
    assert report["sha256"] == synthetic_sha256(SECTION_SIZE + 99, 6)


def test_outgoing_stub_from_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [*STUB, "outgoing", "--from", str(tmp_path / "none")], capture_output=True, check=False
    )
    assert result.returncode == qemu_stub.EXIT_USAGE
    assert "no such file" in result.stderr.decode()


# --- the real-format stream ------------------------------------------------------------------

REAL_RAM = 300 * 4096  # two PART sections


@pytest.mark.parametrize(("zero_every", "zeros"), [(0, 0), (3, 100), (255, 1)])
def test_the_real_format_stream_has_its_size_and_passes_the_real_check(
    zero_every: int, zeros: int
) -> None:
    data = b"".join(bytes(v) for v in qemu_stub.iter_real_format(REAL_RAM, 4, zero_every))
    assert len(data) == qemu_stub.real_format_size(REAL_RAM, zero_every)
    digest = qemu_stub.real_format_sha256(REAL_RAM, 4, zero_every)
    assert digest == hashlib.sha256(data).hexdigest()
    checker = check(data)
    assert checker.real is not None and checker.summary is not None
    assert checker.summary.machine == "pc-i440fx-7.2"
    assert checker.summary.blocks == {"pc.ram": REAL_RAM}
    assert checker.summary.pages == REAL_RAM // 4096 - zeros
    assert checker.summary.zero_pages == zeros
    if zero_every:  # a zero page is a CONTINUE ZERO with fill byte 0, as QEMU writes it
        assert struct.pack(">Q", (zero_every - 1) * 4096 | 0x22) + b"\0" in data


@pytest.mark.parametrize("cut", [20, 200, 5000, 1_100_000, -30, -1])
def test_the_real_check_rejects_a_cut_real_format_stream(cut: int) -> None:
    data = b"".join(bytes(view) for view in qemu_stub.iter_real_format(REAL_RAM, 4))
    error = rejection(data[:cut])
    assert error.reason.startswith("truncated: the stream ends in ")
    assert error.offset == len(data[:cut])


def test_the_real_check_rejects_a_page_outside_its_block() -> None:
    data = bytearray(b"".join(bytes(v) for v in qemu_stub.iter_real_format(REAL_RAM, 4)))
    at = data.index(struct.pack(">Q", 4096 | 0x28))  # the second page's header
    data[at : at + 8] = struct.pack(">Q", REAL_RAM | 0x28)
    error = rejection(bytes(data))
    assert f"page at 0x{REAL_RAM:x} outside RAM block 'pc.ram'" in error.reason
    assert error.offset == at
