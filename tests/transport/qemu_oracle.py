"""Real QEMU 7.2 as the oracle for the stub, shared by the differential tests: make a save,
restore a stream into QEMU for its verdict, and the stub's verdict on the same bytes."""

from __future__ import annotations

import contextlib

from xdrstream.endpoints.migration import receiver_state
from xdrstream.endpoints.qemu import QemuLauncher
from xdrstream.endpoints.qemu_stub import StreamChecker, StreamRejected
from xdrstream.endpoints.sink import EndpointLauncher


def save(launcher: EndpointLauncher) -> bytes:
    """The whole stream of a save from `launcher` (a QEMU guest or the stub)."""
    with launcher.save() as endpoint:
        buffer = bytearray(1 << 16)
        chunks = []
        while count := endpoint.readinto(buffer):
            chunks.append(bytes(buffer[:count]))
        result = endpoint.wait(timeout=60)
    assert result.ok, result.error
    return b"".join(chunks)


def qemu_verdict(
    launcher: QemuLauncher, data: bytes, timeout: float = 60.0, hang_refuses: bool = False
) -> tuple[bool, str]:
    """Whether QEMU restores `data`. A restore still running after `timeout` raises, or
    counts as refused with `hang_refuses` (commands that leave QEMU waiting for good)."""
    with launcher.restore() as endpoint:
        with contextlib.suppress(BrokenPipeError):  # QEMU gave up or stopped at EOF
            endpoint.write(data)
        try:
            result = endpoint.wait(timeout=timeout)
        except TimeoutError as exc:
            if not hang_refuses:
                raise
            endpoint.abort("did not complete")
            return False, str(exc)
    return result.ok, result.error or ""


def stub_verdict(data: bytes, receiver: bytes | None = None) -> tuple[bool, str]:
    """Whether the stub's checker (the stub's own code) accepts `data`, and why not; with
    `receiver` (a save of the receiving machine), as `--receiver FILE` judges it."""
    checker = StreamChecker(receiver=None if receiver is None else receiver_state(receiver))
    try:
        checker.feed(memoryview(data))
        checker.finish()
    except StreamRejected as exc:
        return False, str(exc)
    return True, ""
