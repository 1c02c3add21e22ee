"""The receive pool follows the per-stream limit (spec.md §8.1, §8.2, §8.4).

A server whose application is as slow as the limit allows (it takes a chunk only while
reading is paused, and holds the chunk it is writing out until it takes the next) holds
the most in-place frames one stream can: the pool then serves every frame after the first
few without allocating, and reading pauses at the bound (never a frame more).
"""

from __future__ import annotations

from collections import deque

import pytest
from protocol_helpers import PROCS, call_args, call_result, deliver, drain, pair

from xdrstream.protocol import Connection, Limits
from xdrstream.protocol.events import Call, Reply, StreamData
from xdrstream.protocol.framing import (
    IN_PLACE_MIN,
    LEGACY_STREAM_PAYLOAD,
    POOL_MAX,
    STREAM_BUFFER,
    FrameDecoder,
    pool_size_for,
)


def _slow_reader(window: int, chunk: int, frames: int) -> tuple[Connection, int, int]:
    """A V2 upload of ``frames`` chunks into a server with per-stream limit ``window``,
    received in place by the slowest application the limit allows.  Returns the server,
    its allocations after the first ``pool`` frames, and the most chunks it held at once
    (queued plus the one being written out)."""
    client, server = pair(limits=Limits(stream_buffer=window))
    serial, proc = client.next_serial(), PROCS["v2 upload"]
    deliver(server, client.send(Call(serial, 0x58445253, 1, proc, call_args(proc))))
    deliver(client, server.send(Reply(serial, call_result(proc))))
    wire = b"".join(
        client.send(StreamData(serial, bytes([i % 251]) * chunk)) for i in range(frames)
    )
    queue: deque[StreamData] = deque()
    writing: StreamData | None = None  # the chunk the application is writing out
    taken = held = pos = 0
    warm = -1
    while pos < len(wire) or queue:
        if server.reading_paused or pos == len(wire):
            writing = queue.popleft()  # the previous chunk is released here
            assert bytes(writing.data) == bytes([taken % 251]) * chunk  # never overwritten
            server.stream_consumed(serial, len(writing.data))
            taken += 1
            if taken == pool_size_for(window):
                warm = server.receive_allocations
            continue
        buffer = server.get_buffer(16384)
        n = min(len(buffer), len(wire) - pos)
        buffer[:n] = wire[pos : pos + n]
        server.buffer_updated(n)
        pos += n
        for event in drain(server):
            assert isinstance(event, StreamData)
            queue.append(event)
        held = max(held, len(queue) + (writing is not None))
    assert taken == frames and warm >= 0
    return server, server.receive_allocations - warm, held


@pytest.mark.parametrize(
    ("window", "chunk"),
    [
        (STREAM_BUFFER, LEGACY_STREAM_PAYLOAD),  # the drivers' default
        (6 * LEGACY_STREAM_PAYLOAD, LEGACY_STREAM_PAYLOAD),  # more than 4 buffers' worth
        (512 * 1024, IN_PLACE_MIN),  # the smallest frames received in place
    ],
)
def test_a_stream_within_its_limit_is_received_without_allocating(window: int, chunk: int) -> None:
    frames = 3 * pool_size_for(window) + 5  # well past the bound, several times round
    _, allocated, held = _slow_reader(window, chunk, frames)
    assert allocated == 0  # every later frame was received into a pooled buffer
    # reading paused at the bound: at most ceil(window / chunk) queued, one being written
    assert held <= -(-window // chunk) + 1
    assert pool_size_for(window) >= held + 1  # (and the one being received)


def test_the_pool_is_bounded() -> None:
    assert pool_size_for(None) == 4
    assert pool_size_for(STREAM_BUFFER) >= 4  # two default frames held, one written, one read
    assert pool_size_for(64 << 20) == POOL_MAX  # a large limit does not make a large pool
    with pytest.raises(ValueError, match="pool_size"):
        FrameDecoder(pool_size=POOL_MAX + 1)
