"""Regression tests for what the fuzzers found in our own code.

Each test reproduces one finding and failed before its fix. (A finding not yet fixed would
be marked ``xfail(strict=True)`` with its report until the fix lands.)

Finding 1 (frames_fuzzer, tracemalloc check of ``check_memory``; fixed in 16d6067):
FrameDecoder kept every fed chunk as its own memoryview + bytes object, ~300 bytes of
overhead per read, so a peer dripping a frame one byte per read made it hold ~300 times
the frame's size (spec.md §8.1 bounds the buffer by one frame plus one read).
"""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable

from xdrstream.protocol import Connection, Role
from xdrstream.protocol.framing import FrameDecoder

FRAME = 1 << 16  # an announced 64 KiB frame, delivered in tiny reads


def _peak_while_buffering(feed: Callable[[bytes], None], read_size: int) -> int:
    frame = struct.pack(">I", FRAME) + bytes(FRAME - 4)
    tracemalloc.start()
    try:
        for i in range(0, FRAME - read_size, read_size):
            feed(frame[i : i + read_size])
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_finding_1_frame_decoder_memory_is_linear_for_one_byte_reads() -> None:
    decoder = FrameDecoder(FRAME)

    def feed(chunk: bytes) -> None:
        decoder.feed(chunk)
        assert decoder.next_frame() is None

    peak = _peak_while_buffering(feed, 1)
    assert decoder.buffered == FRAME - 1
    assert peak < 4 * FRAME, f"peak {peak} bytes to buffer {FRAME} bytes"


def test_finding_1_through_the_engine() -> None:
    conn = Connection(Role.SERVER)
    peak = _peak_while_buffering(conn.receive_data, 3)
    assert 0 < conn.buffered < FRAME
    assert peak < 4 * FRAME, f"peak {peak} bytes to buffer {FRAME} bytes"


def test_reads_of_normal_size_stay_linear() -> None:
    decoder = FrameDecoder(FRAME)
    peak = _peak_while_buffering(decoder.feed, 4096)
    assert peak < 2 * FRAME
