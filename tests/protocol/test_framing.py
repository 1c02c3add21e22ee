"""Frame decoder and header packing (spec.md §3, §4.1, §4.2)."""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdrstream.protocol.errors import LocalProtocolError, RemoteProtocolError
from xdrstream.protocol.framing import (
    HEADER_SIZE,
    LEN_SIZE,
    MAX_FRAME,
    MIN_FRAME,
    FrameDecoder,
    Header,
    MessageStatus,
    MessageType,
    pack_frame,
    pack_header,
    parse_header,
)

REMOTE_PROG = 0x20008086

headers = st.builds(
    Header,
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(-(2**31), 2**31 - 1),
    st.sampled_from(list(MessageType)),
    st.integers(0, 2**32 - 1),
    st.sampled_from(list(MessageStatus)),
)
frames = st.tuples(headers, st.binary(max_size=300))


def decode_all(decoder: FrameDecoder) -> list[tuple[Header, bytes, int]]:
    out = []
    while (frame := decoder.next_frame()) is not None:
        out.append((frame.header, bytes(frame.payload), frame.offset))
    return out


def test_screenshot_data_message_is_byte_exact() -> None:
    # tests/fixtures/libvirt/screenshot.pcapng: libvirtd sends the 33443-byte PNG as one
    # STREAM/CONTINUE frame whose length word is 33471 (28 + 33443: no XDR padding).
    payload = b"\x89PNG" + bytes(33443 - 4)
    frame = pack_frame(Header(REMOTE_PROG, 1, 211, MessageType.STREAM, 7, 2), payload)
    assert len(frame) == 33471
    assert frame[:28] == struct.pack(">7I", 33471, REMOTE_PROG, 1, 211, 3, 7, 2)
    decoder = FrameDecoder()
    decoder.feed(frame)
    [(header, body, offset)] = decode_all(decoder)
    assert header == (REMOTE_PROG, 1, 211, MessageType.STREAM, 7, MessageStatus.CONTINUE)
    assert body == payload and offset == 0


def test_empty_stream_message_is_28_bytes() -> None:
    # The download EOF / finish confirm in every libvirt capture: length word 28, no payload.
    assert pack_header(Header(REMOTE_PROG, 1, 209, 3, 10, 0)) == struct.pack(
        ">7I", 28, REMOTE_PROG, 1, 209, 3, 10, 0
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(frames, max_size=6), st.data())
def test_any_split_gives_the_same_frames(
    items: list[tuple[Header, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(pack_frame(h, p) for h, p in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = FrameDecoder()
    got = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        decoder.feed(stream[prev:cut])
        got.extend(decode_all(decoder))
        prev = cut
    assert [(h, p) for h, p, _ in got] == [(h, p) for h, p in items]
    offsets = [o for _, _, o in got]
    expected_offsets = []
    pos = 0
    for _h, p in items:
        expected_offsets.append(pos)
        pos += MIN_FRAME + len(p)
    assert offsets == expected_offsets
    assert decoder.buffered == 0


def test_one_byte_at_a_time_with_bytearray_and_memoryview_inputs() -> None:
    frame = pack_frame(Header(1, 1, 1, 0, 5, 0), b"payload!")
    decoder = FrameDecoder()
    for i, byte in enumerate(frame):
        chunk = bytearray([byte]) if i % 2 else memoryview(bytes([byte]))
        decoder.feed(chunk)
    [(header, payload, _)] = decode_all(decoder)
    assert header.serial == 5 and payload == b"payload!"


@pytest.mark.parametrize("length", [0, 1, 4, 27])
def test_length_below_minimum_is_rejected_with_offset(length: int) -> None:
    good = pack_frame(Header(1, 1, 1, 0, 0, 0))
    decoder = FrameDecoder()
    decoder.feed(good + struct.pack(">I", length))
    assert decoder.next_frame() is not None
    with pytest.raises(RemoteProtocolError, match=r"§3\.4") as info:
        decoder.next_frame()
    assert info.value.offset == len(good)
    with pytest.raises(RemoteProtocolError):  # poisoned
        decoder.feed(b"x")


def test_length_above_limit_is_rejected_before_the_body_arrives() -> None:
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", MAX_FRAME + 5))
    with pytest.raises(RemoteProtocolError, match=r"§3\.4"):
        decoder.next_frame()
    # exactly at the limit is accepted (and waits for the body)
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", MAX_FRAME + 4))
    assert decoder.next_frame() is None
    small = FrameDecoder(max_frame=100)
    small.feed(struct.pack(">I", 105))
    with pytest.raises(RemoteProtocolError, match="exceeds the limit of 100"):
        small.next_frame()


@pytest.mark.parametrize(
    ("word", "value", "section"), [(3, 7, "§4.1"), (3, -1, "§4.1"), (5, 3, "§4.2")]
)
def test_bad_type_or_status_word(word: int, value: int, section: str) -> None:
    words = [1, 1, 1, 0, 9, 0]
    words[word] = value
    frame = struct.pack(">I6i", 28, *[w if w < 2**31 else w - 2**32 for w in words])
    decoder = FrameDecoder()
    decoder.feed(pack_frame(Header(1, 1, 1, 0, 8, 0)) + frame)
    decoder.next_frame()
    with pytest.raises(RemoteProtocolError, match=section.replace(".", r"\.")) as info:
        decoder.next_frame()
    assert info.value.offset == 28 + 4 + 4 * word


def test_parse_header_short_input() -> None:
    with pytest.raises(RemoteProtocolError, match=r"§3\.2"):
        parse_header(bytes(HEADER_SIZE - 1))
    assert parse_header(bytes(HEADER_SIZE)) == Header(0, 0, 0, 0, 0, 0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 64))
def test_random_bytes_give_frames_or_documented_errors(blob: bytes, step: int) -> None:
    decoder = FrameDecoder(max_frame=256)
    try:
        for i in range(0, len(blob), step):
            decoder.feed(blob[i : i + step])
            for _, payload, _ in decode_all(decoder):
                assert len(payload) <= 256 - HEADER_SIZE
    except RemoteProtocolError as exc:
        assert exc.section in {"§3.2", "§3.4", "§4.1", "§4.2"}
        assert exc.offset is not None and 0 <= exc.offset <= len(blob)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, min_size=1, max_size=4), st.data())
def test_mutated_frames_give_frames_or_documented_errors(
    items: list[tuple[Header, bytes]], data: st.DataObject
) -> None:
    stream = bytearray(b"".join(pack_frame(h, p) for h, p in items))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(stream) - 1))
        stream[pos] = data.draw(st.integers(0, 255))
    decoder = FrameDecoder(max_frame=4096)
    decoder.feed(bytes(stream))
    try:
        decode_all(decoder)
    except RemoteProtocolError as exc:
        assert exc.section in {"§3.4", "§4.1", "§4.2"}


def feed_into(decoder: FrameDecoder, data: bytes, sizes: list[int], modes: list[bool]) -> list:
    """Deliver ``data`` in pieces of ``sizes`` (cycled), alternating feed() and
    get_buffer()/buffer_updated() as ``modes`` says; returns the decoded frames."""
    out = []
    pos = 0
    i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        if modes[i % len(modes)]:
            buf = decoder.get_buffer(size)
            n = min(len(buf), len(data) - pos, size)
            buf[:n] = data[pos : pos + n]
            decoder.buffer_updated(n)
        else:
            n = min(size, len(data) - pos)
            decoder.feed(data[pos : pos + n])
        pos += n
        i += 1
        out.extend(decode_all(decoder))
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(headers, st.binary(max_size=300) | st.just(bytes(70000))), max_size=5),
    st.lists(st.integers(1, 100000), min_size=1, max_size=5),
    st.lists(st.booleans(), min_size=1, max_size=5),
)
def test_receive_into_and_feed_mix_gives_the_same_frames(
    items: list[tuple[Header, bytes]], sizes: list[int], modes: list[bool]
) -> None:
    stream = b"".join(pack_frame(h, p) for h, p in items)
    got = feed_into(FrameDecoder(), stream, sizes, modes)
    assert [(h, p) for h, p, _ in got] == [(h, p) for h, p in items]


def test_large_payload_is_received_in_place() -> None:
    payload = bytes(range(256)) * 1024  # 256 KiB
    frame = pack_frame(Header(1, 1, 1, MessageType.STREAM, 3, 2), payload)
    decoder = FrameDecoder()
    for _ in range(2):  # the first frame grows its buffer, the second reuses it
        decoder.feed(frame[:100])  # header and a little payload arrive first
        pos, bufs = 100, []
        while pos < len(frame):
            buf = decoder.get_buffer()
            assert 0 < len(buf) <= decoder.frame_remaining == len(frame) - pos
            buf[:] = frame[pos : pos + len(buf)]
            decoder.buffer_updated(len(buf))
            pos += len(buf)
            bufs.append(buf)
        got = decoder.next_frame()
        assert got is not None and bytes(got.payload) == payload
        # no copy after the transport's (the last step's buffer is the payload's own)
        assert got.payload.obj is bufs[-1].obj and got.payload.readonly
        assert decoder.buffered == 0
        del got, bufs, buf
    assert len(decoder.get_buffer()) > 0  # and the pooled buffer serves as the arena
    decoder.feed(frame[:100])
    assert len(decoder.get_buffer()) == len(frame) - 100  # pooled: exactly the rest


def test_reads_of_the_payload_size_receive_frames_in_place() -> None:
    # A transport reading exactly a payload's size (256 KiB, libvirt's chunk) gets each
    # frame's header and all but 28 bytes of its payload in one read: the frame must still
    # be received in place (the read's buffer grows once), not joined from copies.
    payload = bytes(range(256)) * 1024
    frame = pack_frame(Header(1, 1, 1, MessageType.STREAM, 3, 2), payload)
    wire = memoryview(frame * 4)
    decoder, pos, in_place = FrameDecoder(), 0, 0
    while pos < len(wire):
        buf = decoder.get_buffer(len(payload))
        n = min(len(buf), len(wire) - pos, len(payload))
        assert n > 0  # never an empty buffer (a recv_into would read it as EOF)
        buf[:n] = wire[pos : pos + n]
        decoder.buffer_updated(n)
        pos += n
        while (got := decoder.next_frame()) is not None:
            assert bytes(got.payload) == payload
            in_place += got.payload.obj is buf.obj
    assert in_place == 4


def _traced(action: Callable[[], object]) -> tuple[object, int]:
    """``action()``'s result and the memory it left allocated (tracemalloc)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = action()
        return result, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _announce(decoder: FrameDecoder, length: int, body: bytes = b"") -> None:
    """A frame header announcing ``length`` bytes, then ``body``, through get_buffer."""
    data = struct.pack(">IIIiiIi", length, 1, 1, 1, MessageType.STREAM, 1, 2) + body
    pos = 0
    while pos < len(data):
        buf = decoder.get_buffer(65536)
        n = min(len(buf), len(data) - pos)
        buf[:n] = data[pos : pos + n]
        decoder.buffer_updated(n)
        pos += n
        assert decoder.next_frame() is None
    decoder.get_buffer(65536)  # the transport asks for the next buffer: the frame's own


def test_announced_length_is_never_allocated_up_front() -> None:
    # 100 connections each announce a 32 MiB frame and send nothing more (issue 15): the
    # decoders hold a small step each, not 3.2 GB of zeroed buffers (§8.1).
    def flood() -> list[FrameDecoder]:
        decoders = [FrameDecoder() for _ in range(100)]
        for decoder in decoders:
            _announce(decoder, MAX_FRAME + LEN_SIZE)
        return decoders

    decoders, held = _traced(flood)
    assert held < 100 * 64 * 1024, held  # < 64 KiB per connection
    assert isinstance(decoders, list)
    assert all(d.frame_remaining == MAX_FRAME - HEADER_SIZE for d in decoders)


@pytest.mark.parametrize("sent", [0, 100_000, 1_000_000, 5_000_000])
def test_memory_follows_bytes_received(sent: int) -> None:
    # The buffer of a frame that arrives grows with its bytes: never more than twice what
    # was received plus one step, whatever the length announced.
    decoder = FrameDecoder()
    _, held = _traced(lambda: _announce(decoder, MAX_FRAME + LEN_SIZE, bytes(sent)))
    assert held <= 2 * sent + 64 * 1024, (sent, held)
    assert decoder.buffered == MIN_FRAME + sent


def test_released_decoder_gives_its_memory_back() -> None:
    decoder = FrameDecoder()

    def received_then_released() -> int:
        _announce(decoder, MAX_FRAME + LEN_SIZE, bytes(2_000_000))
        during = tracemalloc.get_traced_memory()[0]
        decoder.release()
        return during

    during, held = _traced(received_then_released)
    assert isinstance(during, int) and during > 2_000_000
    assert held < 64 * 1024, held  # the partial frame's buffer is gone
    with pytest.raises(RemoteProtocolError, match="released"):
        decoder.feed(b"x")


def test_a_grown_frame_is_decoded_intact_by_any_split() -> None:
    payload = bytes(range(251)) * 8000  # ~2 MB, larger than the pool keeps
    frame = pack_frame(Header(1, 1, 1, MessageType.STREAM, 3, 2), payload)
    for sizes, modes in (([1000], [True]), ([70000, 3], [True, False]), ([65536], [False])):
        got = feed_into(FrameDecoder(), frame + frame, sizes, modes)
        assert [bytes(p) for _, p, _ in got] == [payload, payload]


def test_dripped_bytes_cost_no_per_read_overhead() -> None:
    # A peer sending one byte per read must not make the decoder hold more than a small
    # multiple of the bytes it buffers (§8.1): small reads are gathered in one buffer.
    import tracemalloc

    frame = pack_frame(Header(1, 1, 1, MessageType.STREAM, 1, 2), bytes(60000))
    decoder = FrameDecoder()
    tracemalloc.start()
    try:
        for i in range(len(frame) - 1):
            decoder.feed(frame[i : i + 1])
            assert decoder.next_frame() is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decoder.buffered == len(frame) - 1
    assert peak < 3 * len(frame), peak
    decoder.feed(frame[-1:])
    got = decoder.next_frame()
    assert got is not None and bytes(got.payload) == bytes(60000)


def _in_place(decoder: FrameDecoder, frame: bytes) -> memoryview:
    """Receive ``frame`` through get_buffer/buffer_updated; its payload view."""
    pos = 0
    while pos < len(frame):
        buf = decoder.get_buffer(16384)
        n = min(len(buf), len(frame) - pos)
        buf[:n] = frame[pos : pos + n]
        decoder.buffer_updated(n)
        pos += n
    got = decoder.next_frame()
    assert got is not None and decoder.next_frame() is None
    return got.payload


def test_in_place_buffers_are_reused_only_when_no_view_is_alive() -> None:
    # Payload buffers are pooled (no zeroing per frame), but a payload the application
    # still holds, even as a slice of a slice, is never written again (§8.1).
    size = 256 * 1024
    frames = [
        pack_frame(Header(1, 1, 1, MessageType.STREAM, 3, 2), bytes([i]) * size) for i in range(8)
    ]
    decoder = FrameDecoder()
    kept = _in_place(decoder, frames[0])[10:][5:]  # a slice keeps the buffer alive
    owner = id(kept.obj)
    buffers = set()
    for i in range(1, 8):
        payload = _in_place(decoder, frames[i])
        buffers.add(id(payload.obj))
        assert bytes(payload) == bytes([i]) * size
        del payload
    assert owner not in buffers and len(buffers) == 1  # one buffer went round
    assert bytes(kept) == bytes(size - 15)  # frame 0's bytes, untouched
    del kept
    reused = [_in_place(decoder, frames[i]) for i in range(2)]  # both pooled buffers
    assert {id(p.obj) for p in reused} & (buffers | {owner})  # pooled buffers come round


def test_released_in_place_buffer_is_recycled() -> None:
    frame = pack_frame(Header(1, 1, 1, MessageType.STREAM, 3, 2), bytes(100000))
    decoder = FrameDecoder()
    _in_place(decoder, frame)  # the first large frame grows its own buffer, then pools it
    first = _in_place(decoder, frame)
    owner = id(first.obj)
    del first
    second = _in_place(decoder, frame)
    assert id(second.obj) == owner  # no view of it was alive: reused
    third = _in_place(decoder, frame)
    assert id(third.obj) != owner  # `second` still holds it


def test_get_buffer_after_a_complete_in_place_frame_is_not_empty() -> None:
    # A complete in-place frame not yet taken by next_frame(): the next buffer receives
    # what follows it (an empty one would read as end of input).
    frames = pack_frame(Header(1, 1, 1, MessageType.STREAM, 3, 2), bytes(100000)) + pack_frame(
        Header(1, 1, 1, MessageType.STREAM, 3, 2), b"tail"
    )
    decoder = FrameDecoder()
    decoder.feed(frames[:100])
    pos = 100
    while pos < len(frames):
        buf = decoder.get_buffer(65536)
        assert len(buf) > 0
        n = min(len(buf), len(frames) - pos)
        buf[:n] = frames[pos : pos + n]
        decoder.buffer_updated(n)
        pos += n
    assert [bytes(p) for _, p, _ in decode_all(decoder)] == [bytes(100000), b"tail"]


@pytest.mark.parametrize("size", [100, 8192])  # a small read (gathered), a large one (kept)
def test_feed_beyond_max_buffered_is_refused_and_changes_nothing(size: int) -> None:
    payload = bytes(range(256)) * 40  # 10240 bytes
    frame = pack_frame(Header(1, 1, 1, MessageType.STREAM, 3, 2), payload)
    decoder = FrameDecoder(max_buffered=len(frame))
    decoder.feed(frame[:size])
    with pytest.raises(LocalProtocolError, match=r"§8\.1"):
        decoder.feed(frame[size:] + frame[:1])  # one byte too many
    assert decoder.buffered == size and decoder.next_frame() is None
    decoder.feed(frame[size:-1])  # within the bound: the decoder carries on
    decoder.feed(frame[-1:])
    got = decoder.next_frame()
    assert got is not None and bytes(got.payload) == payload


def test_a_header_checked_while_incomplete_is_used_once() -> None:
    # next_raw keeps the header of a frame seen before its payload; the frames that follow
    # (cut anywhere, header first seen whole or in pieces) must each use their own header
    frames = [
        pack_frame(Header(1, 1, n, MessageType.STREAM, n, 2), bytes([n]) * (5000 + n))
        for n in range(1, 6)
    ]
    wire = b"".join(frames)
    for cut in (1, 27, 28, 29, 4096, 5029, 6000):
        decoder = FrameDecoder()
        got = []
        for pos in range(0, len(wire), cut):
            decoder.feed(wire[pos : pos + cut])
            got.extend(decode_all(decoder))
        assert [(h.proc, h.serial, p) for h, p, _ in got] == [
            (n, n, bytes([n]) * (5000 + n)) for n in range(1, 6)
        ], cut


def test_an_oversized_call_whose_header_drips_in_is_refused_from_it() -> None:
    # §3.6 with the header cut: the bound is checked once all 28 bytes are here
    decoder = FrameDecoder()
    decoder.call_bound = lambda prog, vers, proc: 16
    head = pack_header(Header(7, 1, 2, MessageType.CALL, 9, 0), 1 << 20)
    for i in range(len(head)):
        decoder.feed(head[i : i + 1])
        assert decoder.next_raw() is None
    assert decoder.buffered == MIN_FRAME  # the header only
    decoder.feed(bytes(1 << 20))
    assert decoder.buffered == MIN_FRAME  # the payload is discarded as it arrives
    raw = decoder.next_raw()
    assert raw is not None and raw[:6] == (7, 1, 2, 0, 9, 0) and decoder.discarded == 1 << 20
