"""The stub launched as a stream endpoint: pipes as libvirt feeds QEMU, verdicts, no leaks."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator

import pytest
from test_cli_support import child_pids, open_fds

from xdrstream.endpoints.qemu_stub import (
    EXIT_FAULT,
    EXIT_IO,
    EXIT_REJECTED,
    SECTION_SIZE,
    Faults,
    StubEndpoint,
    StubLauncher,
    iter_synthetic,
    start_stub_restore,
    start_stub_save,
    synthetic_bytes,
    synthetic_sha256,
)
from xdrstream.endpoints.sink import (
    EndpointError,
    EndpointLauncher,
    EndpointResult,
    Operation,
    StreamEndpoint,
)

SIZE = 3 * SECTION_SIZE + 4321


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Every test leaves no fd and no child process behind."""
    before, children = open_fds(), child_pids()
    yield
    leaked = open_fds() - before
    assert not {fd for fd in leaked if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not child_pids() - children  # none running, no zombie


def restore(endpoint: StubEndpoint, size: int = SIZE, seed: int = 0) -> None:
    for view in iter_synthetic(size, seed):
        endpoint.write(view)


def read_all(endpoint: StreamEndpoint) -> bytes:
    buffer = bytearray(1 << 16)
    chunks = []
    while count := endpoint.readinto(buffer):
        chunks.append(bytes(buffer[:count]))
    return b"".join(chunks)


def test_restore_into_the_stub_gives_its_verdict() -> None:
    with start_stub_restore() as endpoint:
        assert endpoint.operation is Operation.RESTORE
        restore(endpoint)
        result = endpoint.wait(timeout=30)
    assert result.ok and result.error is None and result.exit_code == 0
    assert result.bytes == SIZE and result.sha256 == synthetic_sha256(SIZE, 0)


def test_restore_of_a_truncated_stream_fails_with_the_reason() -> None:
    with start_stub_restore() as endpoint:
        endpoint.write(synthetic_bytes(SIZE, 0)[:-1])
        result = endpoint.wait(timeout=30)
    assert not result.ok and result.exit_code == EXIT_REJECTED
    assert result.error is not None and "truncated" in result.error


def test_restore_stops_reading_when_the_stub_rejects_the_header() -> None:
    with start_stub_restore() as endpoint:
        with pytest.raises(BrokenPipeError):
            # the stub exits at byte 0; the writer sees the broken pipe, then asks why
            for _ in range(64):
                endpoint.write(b"NOTQEMU!" * 65536)
        result = endpoint.wait(timeout=30)
    assert not result.ok and result.error is not None and "bad magic" in result.error


def test_header_only_restore_accepts_any_body() -> None:
    with start_stub_restore(check="header") as endpoint:
        endpoint.write(bytes.fromhex("5145564d00000003") + b"device state of a real QEMU")
        result = endpoint.wait(timeout=30)
    assert result.ok and result.bytes == 35


def test_save_from_the_stub_reads_the_synthetic_stream() -> None:
    with start_stub_save(SIZE, seed=11) as endpoint:
        assert endpoint.operation is Operation.SAVE
        data = read_all(endpoint)
        result = endpoint.wait(timeout=30)
    assert data == synthetic_bytes(SIZE, 11)
    assert result.ok and result.bytes == SIZE
    assert result.sha256 == hashlib.sha256(data).hexdigest()


def test_save_reader_that_stops_early_gets_a_failure_verdict() -> None:
    with start_stub_save(SIZE) as endpoint:
        assert endpoint.readinto(bytearray(100)) > 0
        result = endpoint.wait(timeout=30)
    assert not result.ok and result.exit_code == EXIT_IO
    assert result.error is not None and "write error" in result.error


def test_restore_fault_fail_after() -> None:
    with start_stub_restore(faults=Faults(fail_after=SECTION_SIZE + 10)) as endpoint:
        with pytest.raises(BrokenPipeError):
            restore(endpoint)
        result = endpoint.wait(timeout=30)
    assert not result.ok and result.exit_code == EXIT_FAULT
    assert result.bytes == SECTION_SIZE + 10


def test_save_fault_close_early_looks_successful_but_is_short() -> None:
    with start_stub_save(SIZE, faults=Faults(close_early=5000)) as endpoint:
        data = read_all(endpoint)
        result = endpoint.wait(timeout=30)
    assert result.ok and len(data) == 5000 == result.bytes


def test_save_fault_exit_code() -> None:
    with start_stub_save(SIZE, faults=Faults(fail_after=10, exit_code=42)) as endpoint:
        data = read_all(endpoint)
        result = endpoint.wait(timeout=30)
    assert len(data) == 10
    assert not result.ok and result.exit_code == 42


def test_a_stalled_stub_times_out_and_abort_kills_it() -> None:
    with start_stub_save(SIZE, faults=Faults(stall=60, stall_after=1000)) as endpoint:
        assert len(read_all_available(endpoint, 1000)) == 1000
        with pytest.raises(TimeoutError, match=r"no verdict within 0\.3 s"):
            endpoint.wait(timeout=0.3)
        result = endpoint.abort("stalled")
        assert endpoint.process.returncode is not None
    assert not result.ok and result.error == "stalled"


def read_all_available(endpoint: StubEndpoint, count: int) -> bytes:
    data = bytearray()
    buffer = bytearray(count)
    while len(data) < count:
        got = endpoint.readinto(memoryview(buffer)[: count - len(data)])
        assert got
        data += buffer[:got]
    return bytes(data)


def test_a_stall_delays_but_does_not_break_the_stream() -> None:
    with start_stub_restore(faults=Faults(stall=0.2, stall_after=100)) as endpoint:
        restore(endpoint)
        result = endpoint.wait(timeout=30)
    assert result.ok and result.bytes == SIZE


def test_leaving_the_block_without_a_verdict_kills_the_stub() -> None:
    with start_stub_restore() as endpoint:
        endpoint.write(synthetic_bytes(SIZE, 0)[:1000])
        process = endpoint.process
    assert process.returncode is not None
    assert endpoint.result is not None and not endpoint.result.ok
    with pytest.raises(ValueError, match="closed"):
        _ = endpoint.fd


def test_an_exception_in_the_block_aborts_with_its_message() -> None:
    with pytest.raises(RuntimeError), start_stub_restore() as endpoint:
        raise RuntimeError("client went away")
    assert endpoint.result is not None
    assert endpoint.result.error == "aborted: RuntimeError: client went away"


def test_a_stub_that_dies_without_a_report_is_explained() -> None:
    endpoint = start_stub_restore(python="/bin/false")
    with endpoint:
        result = endpoint.wait(timeout=30)
    assert not result.ok and result.exit_code == 1
    assert result.error is not None and "without a report" in result.error


def test_the_wrong_direction_is_refused() -> None:
    with start_stub_restore() as endpoint, pytest.raises(ValueError, match="restore endpoint"):
        endpoint.readinto(bytearray(1))


def test_restore_fault_close_early_breaks_the_writers_pipe() -> None:
    with start_stub_restore(faults=Faults(close_early=2000)) as endpoint:
        with pytest.raises(BrokenPipeError):
            restore(endpoint)
        result = endpoint.wait(timeout=30)
    assert not result.ok and result.exit_code == EXIT_FAULT and result.bytes == 2000
    assert result.error == "closed the stream early after 2000 bytes (fault injection)"


def test_the_stub_launcher_saves_and_restores_through_the_common_interface() -> None:
    launcher: EndpointLauncher = StubLauncher(save_size=SIZE, seed=3)
    with launcher.save() as source:
        data = read_all(source)
        assert source.wait(timeout=30).ok
    with launcher.restore() as sink:
        sink.write(data)
        result = sink.wait(timeout=30)
    assert result.ok and result.sha256 == synthetic_sha256(SIZE, 3)


def test_abort_from_another_thread_ends_a_wait_in_progress() -> None:
    results: list[EndpointResult] = []
    with start_stub_save(SIZE, faults=Faults(stall=60)) as endpoint:
        waiter = threading.Thread(target=lambda: results.append(endpoint.wait(timeout=30)))
        waiter.start()
        aborted = endpoint.abort("client disconnected")
        waiter.join(10)
        assert not waiter.is_alive()
    assert results == [aborted]
    assert not aborted.ok and aborted.error == "client disconnected"


class _IdleEndpoint(StreamEndpoint):
    """An endpoint around a short-lived child, for racing its closing paths.  Reading its
    descriptor number is slow, so that two closers that check and then take it (instead of
    taking it atomically) both see it open."""

    @property  # type: ignore[override]
    def _fd(self) -> int:
        value = self._raw_fd
        time.sleep(0.002)
        return value

    @_fd.setter
    def _fd(self, value: int) -> None:
        self._raw_fd = value

    def _verdict(self, timeout: float | None) -> EndpointResult:
        return EndpointResult(ok=self.process.wait(timeout) == 0)


def test_abort_wait_and_close_stream_racing_close_the_pipe_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess
    import sys

    from xdrstream.endpoints import sink

    closed: list[int] = []
    real_close = sink.close_fd

    def counting_close(fd: int) -> None:
        closed.append(fd)
        real_close(fd)

    monkeypatch.setattr(sink, "close_fd", counting_close)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # let the threads interleave as much as they can
    try:
        for _ in range(10):
            read_fd, write_fd = os.pipe()
            process = subprocess.Popen(["true"])
            endpoint = _IdleEndpoint(Operation.RESTORE, process, write_fd, sink.stderr_file())
            closed.clear()
            start = threading.Barrier(4)

            def run(
                action: str, endpoint: StreamEndpoint = endpoint, start: threading.Barrier = start
            ) -> None:
                start.wait()
                if action == "wait":
                    endpoint.wait(timeout=30)
                elif action == "abort":
                    endpoint.abort("raced")
                else:
                    endpoint.close_stream()

            threads = [
                threading.Thread(target=run, args=(a,)) for a in ("wait", "abort", "close", "close")
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            os.close(read_fd)
            assert closed.count(write_fd) == 1, closed
            assert endpoint.result is not None and endpoint.process.returncode is not None
    finally:
        sys.setswitchinterval(switch)


def test_a_stub_that_cannot_start_is_an_endpoint_error_and_leaks_no_descriptor() -> None:
    before = open_fds()
    with pytest.raises(EndpointError, match="cannot start the QEMU stub '/nonexistent/python'"):
        start_stub_restore(python="/nonexistent/python")
    with pytest.raises(EndpointError, match="cannot start the QEMU stub"):
        start_stub_save(1 << 20, python="/nonexistent/python")
    assert open_fds() == before
