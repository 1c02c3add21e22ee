"""``xdrstream decode`` on raw frame streams and synthetic captures: bodies, errors, options."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdrstream.capture.decode import DecodedMessage, Decoder, StreamFailure
from xdrstream.capture.pcap import (
    CaptureError,
    Endpoint,
    FlowChunk,
    FlowDirection,
    SyntheticConnection,
    write_pcapng,
)
from xdrstream.cli import main
from xdrstream.protocol.framing import Header, MessageStatus, MessageType, pack_frame

REMOTE = 0x20008086
KEEPALIVE = 0x6B656570
RESTORE = 0x58445253
CALL, REPLY, MESSAGE, STREAM, HOLE = (
    MessageType.CALL,
    MessageType.REPLY,
    MessageType.MESSAGE,
    MessageType.STREAM,
    MessageType.STREAM_HOLE,
)
OK, ERROR, CONTINUE = MessageStatus.OK, MessageStatus.ERROR, MessageStatus.CONTINUE


def xdr_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">I", len(data)) + data + b"\0" * (-len(data) % 4)


def frame(
    proc: int,
    mtype: int,
    status: int = OK,
    payload: bytes = b"",
    serial: int = 1,
    prog: int = REMOTE,
) -> bytes:
    return pack_frame(Header(prog, 1, proc, mtype, serial, status), payload)


def error_body(code: int, domain: int, message: str) -> bytes:
    body = struct.pack(">ii", code, domain) + struct.pack(">I", 1) + xdr_string(message)
    body += struct.pack(">i", 2)  # level
    body += struct.pack(">I", 0)  # no domain
    body += struct.pack(">III", 0, 0, 0)  # str1..3 absent
    body += struct.pack(">ii", 0, 0)  # int1, int2
    body += struct.pack(">I", 0)  # no network
    return body


POOL = xdr_string("tpool") + bytes(range(16))
VOL = xdr_string("tpool") + xdr_string("vol1") + xdr_string("/pool/vol1")


def run_decode(
    tmp_path: Path, data: bytes, capsys: pytest.CaptureFixture[str], *options: str
) -> tuple[int, list[dict[str, Any]], str]:
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    status = main(["decode", "--format", "json", *options, str(path)])
    captured = capsys.readouterr()
    return status, [json.loads(line) for line in captured.out.splitlines()], captured.err


def test_bodies_of_every_message_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stream = b"".join(
        [
            frame(84, CALL, payload=xdr_string("tpool")),
            frame(84, REPLY, payload=POOL),
            frame(208, CALL, payload=VOL + struct.pack(">QQI", 0, 0, 1), serial=2),
            frame(208, STREAM, CONTINUE, b"\x01\x02\x03", serial=2),
            frame(208, HOLE, CONTINUE, struct.pack(">qI", 65536, 0), serial=2),
            frame(208, STREAM, OK, serial=2),
            frame(95, REPLY, ERROR, error_body(50, 18, "no such volume"), serial=3),
            frame(209, STREAM, ERROR, serial=4),
            frame(1, MESSAGE, prog=KEEPALIVE, serial=0),
            frame(7, CALL, prog=0x12345678),
        ]
    )
    status, found, err = run_decode(tmp_path, stream, capsys)
    assert (status, err) == (0, "")
    names = [(m["procedure_name"], m["type_name"], m["status_name"]) for m in found]
    assert names == [
        ("STORAGE_POOL_LOOKUP_BY_NAME", "CALL", "OK"),
        ("STORAGE_POOL_LOOKUP_BY_NAME", "REPLY", "OK"),
        ("STORAGE_VOL_UPLOAD", "CALL", "OK"),
        ("STORAGE_VOL_UPLOAD", "STREAM", "CONTINUE"),
        ("STORAGE_VOL_UPLOAD", "STREAM_HOLE", "CONTINUE"),
        ("STORAGE_VOL_UPLOAD", "STREAM", "OK"),
        ("STORAGE_VOL_LOOKUP_BY_NAME", "REPLY", "ERROR"),
        ("STORAGE_VOL_DOWNLOAD", "STREAM", "ERROR"),
        ("XS_KEEPALIVE_PING", "MESSAGE", "OK"),
        (None, "CALL", "OK"),
    ]
    bodies = [m.get("body") for m in found]
    assert bodies[0] == {"name": "tpool"}
    assert bodies[1] == {"pool": {"name": "tpool", "uuid": {"hex": bytes(range(16)).hex()}}}
    assert bodies[2] == {
        "vol": {"pool": "tpool", "name": "vol1", "key": "/pool/vol1"},
        "offset": 0,
        "length": 0,
        "flags": 1,
    }
    assert bodies[3] == {"data_bytes": 3}
    assert bodies[4] == {"length": 65536, "flags": 0}
    assert bodies[5] is None
    assert bodies[6] is not None
    assert (bodies[6]["code"], bodies[6]["domain"], bodies[6]["message"]) == (
        50,
        18,
        "no such volume",
    )
    assert bodies[7] == {"abort": True}
    assert bodies[8] is None and bodies[9] is None
    assert found[9]["program_name"] is None
    offsets = [m["offset"] for m in found]
    assert offsets[0] == 0 and offsets[1] == found[0]["length"]
    assert all(m["direction"] is None for m in found)


def test_truncated_stream_prints_what_decoded_then_the_offset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = frame(2, CALL)
    second = frame(84, CALL, payload=xdr_string("tpool"), serial=2)
    status, found, err = run_decode(tmp_path, first + second[:-3], capsys)
    assert status == 1
    assert [m["serial"] for m in found] == [1]
    assert f"byte offset {len(first)}" in err
    assert f"{len(second) - 3} of {len(second)} bytes present" in err
    status, found, err = run_decode(tmp_path, first + b"\0\0", capsys)
    assert status == 1 and len(found) == 1
    assert "inside a length word (2 of 4 bytes)" in err


def test_bad_length_and_header_name_the_offset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = frame(2, CALL)
    status, found, err = run_decode(tmp_path, good + struct.pack(">I", 12) + bytes(24), capsys)
    assert status == 1 and len(found) == 1
    assert "§3.4" in err and f"byte offset {len(good)}" in err
    bad_type = bytearray(frame(2, CALL))
    bad_type[16:20] = struct.pack(">I", 9)
    status, found, err = run_decode(tmp_path, good + bytes(bad_type), capsys)
    assert status == 1 and len(found) == 1
    assert "§4.1" in err and f"byte offset {len(good) + 16}" in err
    # the offset is named once: "byte offset N: §4.1: ...", not again at the end
    assert err.count("offset") == 1, err


def test_body_that_does_not_match_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = frame(84, CALL, payload=struct.pack(">I", 100) + b"abc") + frame(2, CALL, serial=2)
    stream += frame(2, CALL, payload=b"\0\0\0\0", serial=3)  # void arguments with a payload
    stream += frame(208, HOLE, CONTINUE, struct.pack(">qI", -5, 0), serial=4)
    status, found, _err = run_decode(tmp_path, stream, capsys)
    assert status == 1
    assert len(found) == 4  # decoding goes on after a bad body
    assert "byte offset" in found[0]["body_error"]
    assert "body_error" not in found[1]
    assert "empty payload" in found[2]["body_error"]
    assert "length -5" in found[3]["body_error"]


def test_v1_stream_calls_of_the_demo_program(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_call = struct.pack(">III", 1, 0, 5) + b"hello\0\0\0"  # stream 1, DATA, 5 bytes
    read_call = struct.pack(">III", 1, 4, 4096)  # READ up to 4096 bytes
    chunk = struct.pack(">II", 0, 2) + b"hi\0\0"  # DATA "hi"
    stream = b"".join(
        [
            frame(4, CALL, CONTINUE, data_call, serial=2, prog=RESTORE),
            frame(4, REPLY, OK, b"", serial=2, prog=RESTORE),
            frame(5, CALL, CONTINUE, read_call, serial=3, prog=RESTORE),
            frame(5, REPLY, OK, chunk, serial=3, prog=RESTORE),
        ]
    )
    status, found, err = run_decode(tmp_path, stream, capsys)
    assert (status, err) == (0, "")
    assert [m["procedure_name"] for m in found] == ["XS_PROC_RESTORE_V1"] * 2 + [
        "XS_PROC_SAVE_V1"
    ] * 2
    assert found[0]["body"] == {"stream": 1, "op": "DATA", "data_bytes": 5}
    assert "body" not in found[1]
    assert found[2]["body"] == {"stream": 1, "op": "READ", "max_bytes": 4096}
    assert found[3]["body"] == {"op": "DATA", "data_bytes": 2}


def test_describe_frames_of_both_directions_keeps_v1_calls_across_them() -> None:
    up, down = FlowDirection.CLIENT_TO_SERVER, FlowDirection.SERVER_TO_CLIENT
    read_call = frame(5, CALL, CONTINUE, struct.pack(">III", 1, 4, 4096), serial=3, prog=RESTORE)
    chunk = frame(5, REPLY, OK, struct.pack(">II", 0, 2) + b"hi\0\0", serial=3, prog=RESTORE)
    ping = frame(1, MESSAGE, serial=0, prog=KEEPALIVE)
    items = [
        (up, read_call),
        (down, ping),
        (down, chunk),
        (up, read_call[:30]),  # cut off
        (up, ping + ping),  # two frames in one item
        (up, ping),
    ]
    found = list(Decoder.with_schemas().describe_frames(items))
    assert len(found) == len(items)
    first, pong, reply, cut, double, last = found
    assert isinstance(first, DecodedMessage) and isinstance(reply, DecodedMessage)
    assert first.body == {"stream": 1, "op": "READ", "max_bytes": 4096}
    # The reply is read as the answer to the READ call the other direction sent.
    assert reply.body == {"op": "DATA", "data_bytes": 2} and reply.body_error is None
    assert [(m.direction, m.offset) for m in (first, pong, reply)] == [
        (up, 0),
        (down, 0),
        (down, len(ping)),
    ]
    assert isinstance(cut, StreamFailure) and isinstance(double, StreamFailure)
    assert (cut.direction, cut.offset) == (up, len(read_call))
    assert "stream ends inside a frame" in cut.message
    assert str(cut).startswith(f"client->server stream byte offset {len(read_call)}: ")
    assert (double.offset, double.message) == (
        len(read_call) + 30,
        "2 frames where one was expected",
    )
    assert isinstance(last, DecodedMessage)
    assert (last.direction, last.offset) == (up, len(read_call) + 30 + 2 * len(ping))
    # Without its call (one direction alone), the same reply is not a V1 chunk.
    (alone,) = Decoder.with_schemas().describe_frames([(down, chunk)])
    assert isinstance(alone, DecodedMessage) and alone.body is None
    assert "xs_save_ret" in (alone.body_error or "")


def test_extra_schema_with_constants_from_c_headers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = tmp_path / "named.x"
    schema.write_text(
        "struct named { string name<NAMELEN>; };\n"
        "program NAMED { version NAMED_V1 { void SET(named) = 1; } = 1; } = 0x40000002;\n"
    )
    stream = pack_frame(Header(0x40000002, 1, 1, CALL, 1, OK), xdr_string("abc"))
    status, found, err = run_decode(tmp_path, stream, capsys, "--schema", str(schema))
    assert (status, found) == (1, []) and "undefined constant 'NAMELEN'" in err
    options = ("--schema", str(schema), "-D", "NAMELEN=8")
    status, found, _ = run_decode(tmp_path, stream, capsys, *options)
    assert status == 0 and found[0]["body"] == {"name": "abc"}
    status, found, _ = run_decode(
        tmp_path, stream, capsys, "--schema", str(schema), "-D", "NAMELEN=2"
    )
    assert status == 1 and "exceeds" in found[0]["body_error"]
    status, _, err = run_decode(tmp_path, stream, capsys, "--schema", str(tmp_path / "none.x"))
    assert status == 2
    assert f"xdrstream decode: cannot read {tmp_path / 'none.x'}: No such file or directory" in err
    binary = tmp_path / "binary.x"
    binary.write_bytes(b"struct \xff")
    status, _, err = run_decode(tmp_path, stream, capsys, "--schema", str(binary))
    assert (status, err) == (
        1,
        f"xdrstream decode: bad schema: {binary}: not UTF-8 text (byte 7)\n",
    )


def test_extra_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema = tmp_path / "mine.x"
    schema.write_text(
        "struct pair { int a; unsigned hyper b; };\n"
        "program MINE { version MINE_V1 { pair SWAP(pair) = 3; } = 2; } = 0x40000001;\n"
    )
    stream = pack_frame(Header(0x40000001, 2, 3, CALL, 1, OK), struct.pack(">iQ", -1, 7))
    status, found, _ = run_decode(tmp_path, stream, capsys)
    assert status == 0 and "body" not in found[0]
    status, found, _ = run_decode(tmp_path, stream, capsys, "--schema", str(schema))
    assert status == 0
    assert (found[0]["program_name"], found[0]["procedure_name"]) == ("MINE", "SWAP")
    assert found[0]["body"] == {"a": -1, "b": 7}
    broken = tmp_path / "broken.x"
    broken.write_text("struct { int; };")
    assert main(["decode", "--schema", str(broken), str(tmp_path / "input.bin")]) == 1
    assert "bad schema" in capsys.readouterr().err


def connection(port: int, serial: int) -> SyntheticConnection:
    up, down = FlowDirection.CLIENT_TO_SERVER, FlowDirection.SERVER_TO_CLIENT
    return SyntheticConnection(
        Endpoint("127.0.0.1", 40000 + port % 1000),
        Endpoint("127.0.0.1", port),
        [
            FlowChunk(up, frame(2, CALL, serial=serial)),
            FlowChunk(down, frame(2, REPLY, serial=serial)),
        ],
    )


def test_capture_directions_and_port_filter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = write_pcapng([connection(16509, 1), connection(16600, 2)])
    status, found, _ = run_decode(tmp_path, capture, capsys)
    assert status == 0
    assert [(m["direction"], m["serial"]) for m in found] == [
        ("client->server", 1),
        ("server->client", 1),
        ("client->server", 2),
        ("server->client", 2),
    ]
    assert (found[0]["source"], found[0]["destination"]) == ("127.0.0.1:40509", "127.0.0.1:16509")
    assert found[0]["packet"] == 4  # after the three packets of the handshake
    status, found, _ = run_decode(tmp_path, capture, capsys, "--port", "16600")
    assert [m["serial"] for m in found] == [2, 2]


def test_damaged_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = write_pcapng([connection(16509, 1)])
    status, found, err = run_decode(tmp_path, capture[:-30], capsys)
    assert status == 1
    assert [m["type_name"] for m in found] == ["CALL", "REPLY"]
    assert "cut short" in err and "file offset" in err
    assert err.count("offset") == 1, err  # named once, as the capture file's offset
    status, found, err = run_decode(tmp_path, b"\xa1\xb2\xc3\xd4" + bytes(4), capsys)
    assert status == 1 and found == []
    assert "pcap file header needs 24 bytes" in err


def test_bytes_lost_by_the_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    up = FlowDirection.CLIENT_TO_SERVER
    chunks = [FlowChunk(up, frame(2, CALL, serial=n)) for n in range(3)]
    capture = write_pcapng([SyntheticConnection(Endpoint("::1", 5), Endpoint("::1", 6), chunks)])
    # drop the packet of the second frame: the block holding serial 1
    marker = struct.pack(">IIiiIi", REMOTE, 1, 2, CALL, 1, OK)
    start = capture.index(marker)
    block_start = capture.rfind(struct.pack(">I", 6), 0, start - 60)
    length = struct.unpack_from(">I", capture, block_start + 4)[0]
    damaged = capture[:block_start] + capture[block_start + length :]
    status, found, err = run_decode(tmp_path, damaged, capsys)
    assert status == 1
    assert [m["serial"] for m in found] == [0]
    assert "client->server [::1]:5 -> [::1]:6, stream byte offset 28" in err
    assert "lost 28 bytes" in err


def test_text_format_and_stdin(tmp_path: Path) -> None:
    stream = frame(84, CALL, payload=xdr_string("tpool")) + frame(84, REPLY, payload=POOL)
    result = subprocess.run(
        [sys.executable, "-m", "xdrstream.cli", "decode", "-"],
        input=stream,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert "REMOTE_PROGRAM v1 STORAGE_POOL_LOOKUP_BY_NAME(84) CALL OK serial=1" in text
    assert '{"name": "tpool"}' in text
    assert "@40 len=56" in text


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(tmp_path / "missing.bin")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_long_strings_are_cut_in_text_only() -> None:
    from xdrstream.capture.commands import print_messages

    stream = frame(84, CALL, payload=xdr_string("p" * 1000))
    decoder = Decoder.with_schemas()
    for fmt, expected in (("text", "...(1000 chars)"), ("json", "p" * 1000)):
        out = io.StringIO()
        assert print_messages(decoder, stream, fmt, None, out, io.StringIO()) == 0
        assert expected in out.getvalue()


def epb_blocks(capture: bytes) -> tuple[bytes, list[bytes]]:
    """(section and interface blocks, packet blocks) of a big-endian pcapng file."""
    head, packets, offset = b"", [], 0
    while offset < len(capture):
        kind, total = struct.unpack_from(">II", capture, offset)
        block = capture[offset : offset + total]
        if kind == 6:
            packets.append(block)
        else:
            head += block
        offset += total
    return head, packets


def test_concurrent_connections_in_packet_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head, first = epb_blocks(write_pcapng([connection(16509, 1)]))
    _, second = epb_blocks(write_pcapng([connection(16600, 2)]))
    mixed = [block for pair in zip(first, second, strict=True) for block in pair]
    status, found, _ = run_decode(tmp_path, head + b"".join(mixed), capsys)
    assert status == 0
    assert [(m["serial"], m["packet"]) for m in found] == [(1, 7), (2, 8), (1, 9), (2, 10)]


def test_segment_captured_out_of_order_keeps_frames_in_stream_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a 2-core loopback capture the last segment of a 256 KiB frame was written after
    the next frame's segment (no loss).  Wireshark shows both frames at the packet that
    fills the hole, in stream order; we used to show the small frame first (its own
    packet was earlier), and the live tshark comparisons failed about 1 run in 8."""
    up = FlowDirection.CLIENT_TO_SERVER
    big = frame(201, STREAM, CONTINUE, b"b" * 40000)  # two segments: 32768 + the rest
    small = frame(201, STREAM, CONTINUE, b"s" * 52)
    capture = write_pcapng(
        [
            SyntheticConnection(
                Endpoint("127.0.0.1", 40001),
                Endpoint("127.0.0.1", 16509),
                [FlowChunk(up, big), FlowChunk(up, small)],
            )
        ]
    )
    head, packets = epb_blocks(capture)
    packets[4], packets[5] = packets[5], packets[4]  # big's tail after small's packet
    status, found, _ = run_decode(tmp_path, head + b"".join(packets), capsys)
    assert status == 0
    assert [(m["length"], m["packet"]) for m in found] == [(len(big), 6), (len(small), 6)]


def test_port_that_no_connection_uses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, found, err = run_decode(
        tmp_path, write_pcapng([connection(16509, 1)]), capsys, "--port", "9"
    )
    assert (status, found) == (1, [])
    assert "no TCP connection of the capture uses port 9" in err
    assert "offset" not in err and "16509" in err  # no offset to name; the ports there are
    with pytest.raises(SystemExit) as usage:
        main(["decode", "--port", "99999", str(tmp_path / "input.bin")])
    assert usage.value.code == 2
    assert "'99999' is not a TCP port (1-65535)" in capsys.readouterr().err


def test_loss_inside_a_frame_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    up = FlowDirection.CLIENT_TO_SERVER
    big = frame(208, STREAM, CONTINUE, bytes(70_000), serial=3)  # three segments
    chunks = [FlowChunk(up, frame(2, CALL)), FlowChunk(up, big)]
    capture = write_pcapng([SyntheticConnection(Endpoint("::1", 5), Endpoint("::1", 6), chunks)])
    head, packets = epb_blocks(capture)
    damaged = head + b"".join(packets[:5] + packets[6:])  # lose the middle segment of `big`
    status, found, err = run_decode(tmp_path, damaged, capsys)
    assert status == 1 and [m["serial"] for m in found] == [1]
    assert "stream byte offset 28" in err and "stream ends inside a frame" in err
    assert "lost 32768 bytes of this stream at offset 32796" in err


FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "libvirt" / "pool-info.pcapng"


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_damaged_captures_give_only_documented_errors(data: st.DataObject) -> None:
    capture = bytearray(FIXTURE.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(capture) - 1))
        capture[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(capture)))
    decoder = Decoder.with_schemas()
    try:
        items = list(decoder.decode(bytes(capture[:cut])))
    except CaptureError as exc:
        assert exc.offset >= 0
        return
    for item in items:
        assert isinstance(item, DecodedMessage | StreamFailure)
        if isinstance(item, DecodedMessage):
            json.dumps(item.as_json())


@settings(max_examples=150, deadline=None)
@given(stream=st.binary(max_size=400))
def test_random_streams_give_only_documented_errors(stream: bytes) -> None:
    items = list(Decoder.with_schemas().decode_stream(stream))
    assert all(isinstance(item, DecodedMessage | StreamFailure) for item in items)
    assert sum(isinstance(item, StreamFailure) for item in items) <= 1
