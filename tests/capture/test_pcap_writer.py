"""``write_pcapng``: synthetic TCP connections that our reader and tshark both read back."""

from __future__ import annotations

import io
import random
import subprocess
from pathlib import Path

import pytest
from realpeers import require, rows_from_decode_json, rows_from_tshark, tshark_fields

from xdrstream.capture.commands import print_messages
from xdrstream.capture.decode import Decoder
from xdrstream.capture.pcap import (
    Endpoint,
    FlowChunk,
    FlowDirection,
    SyntheticConnection,
    read_packets,
    reassemble_capture,
    write_pcapng,
)
from xdrstream.protocol.framing import Header, MessageStatus, MessageType, pack_frame

UP, DOWN = FlowDirection.CLIENT_TO_SERVER, FlowDirection.SERVER_TO_CLIENT
PROG, VERS = 0x20008086, 1


def libvirt_upload_chunks(data: bytes, hole: int) -> list[FlowChunk]:
    """A V2 sparse upload as libvirt frames it: call, reply, data, hole, data, finish."""

    def frame(
        direction: FlowDirection, proc: int, mtype: int, status: int, payload: bytes
    ) -> FlowChunk:
        header = Header(PROG, VERS, proc, mtype, 5, status)
        return FlowChunk(direction, pack_frame(header, payload))

    args = bytes(4) + bytes(4) + bytes(4) + bytes(20)  # empty pool/name/key, offset, length, flags
    ok, cont = MessageStatus.OK, MessageStatus.CONTINUE
    return [
        frame(UP, 208, MessageType.CALL, ok, args),
        frame(DOWN, 208, MessageType.REPLY, ok, b""),
        frame(UP, 208, MessageType.STREAM, cont, data[:262120]),
        frame(UP, 208, MessageType.STREAM_HOLE, cont, hole.to_bytes(8, "big") + bytes(4)),
        frame(UP, 208, MessageType.STREAM, cont, data[262120:]),
        frame(UP, 208, MessageType.STREAM, ok, b""),
        frame(DOWN, 208, MessageType.STREAM, ok, b""),
    ]


def sample_connections() -> list[SyntheticConnection]:
    rng = random.Random(7)
    big = rng.randbytes(300_000)  # spans several segments
    return [
        SyntheticConnection(
            Endpoint("127.0.0.1", 45000),
            Endpoint("127.0.0.1", 16509),
            libvirt_upload_chunks(big, hole=1 << 20),
            start=1_700_000_000.0,
        ),
        SyntheticConnection(
            Endpoint("::1", 45001),
            Endpoint("::1", 16509),
            [FlowChunk(UP, b"ping"), FlowChunk(DOWN, b"pong" * 3), FlowChunk(UP, b"")],
            start=1_700_000_010.0,
        ),
    ]


def test_roundtrip_through_our_reader() -> None:
    connections = sample_connections()
    capture = write_pcapng(connections)
    result = reassemble_capture(capture)
    assert result.error is None
    assert len(result.flows) == len(connections)
    for flow, connection in zip(result.flows, connections, strict=True):
        assert (flow.client, flow.server, flow.handshake_seen) == (
            connection.client,
            connection.server,
            True,
        )
        for direction in FlowDirection:
            sent = b"".join(c.data for c in connection.chunks if c.direction is direction)
            assert flow.stream(direction).data == sent
            assert flow.stream(direction).retransmitted == 0
    times = [packet.timestamp for packet in read_packets(capture)]
    assert times == sorted(times)
    assert times[0] == pytest.approx(1_700_000_000.0)


def test_bad_endpoints_are_refused() -> None:
    connection = SyntheticConnection(Endpoint("127.0.0.1", 1), Endpoint("::1", 2), [])
    with pytest.raises(ValueError, match="address families differ"):
        write_pcapng([connection])
    connection = SyntheticConnection(Endpoint("::1", 70000), Endpoint("::1", 2), [])
    with pytest.raises(ValueError, match="port 70000"):
        write_pcapng([connection])


@pytest.mark.real_peers
def test_tshark_reads_the_synthetic_capture(tmp_path: Path) -> None:
    require("tshark")
    path = tmp_path / "synthetic.pcapng"
    path.write_bytes(write_pcapng(sample_connections()))
    result = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
            "-T",
            "fields",
            "-e",
            "tcp.stream",
            "-e",
            "tcp.len",
            "-e",
            "tcp.checksum.status",
            "-e",
            "_ws.expert",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(lines) == len(list(read_packets(path.read_bytes())))
    assert {line[0] for line in lines} == {"0", "1"}
    assert {line[2] for line in lines} == {"1"}  # every TCP checksum verified as good
    # tshark's expert info: handshake and FIN notes only, no lost or out-of-order segment
    assert not [line for line in lines if "/Sequence)" in line[3] and "Warn" in line[3]]
    assert not [line for line in lines if "Error" in line[3] or "Warning" in line[3]]
    streams = {"0": 0, "1": 0}
    for stream, length, *_ in lines:
        streams[stream] += int(length)
    assert streams["1"] == len(b"ping") + len(b"pong" * 3)


@pytest.mark.real_peers
def test_libvirt_dissector_agrees_with_decode_on_a_synthetic_capture(tmp_path: Path) -> None:
    require("tshark")
    path = tmp_path / "upload.pcapng"
    path.write_bytes(write_pcapng(sample_connections()[:1]))
    theirs = rows_from_tshark(tshark_fields(path, 16509))
    out, err = io.StringIO(), io.StringIO()
    status = print_messages(Decoder.with_schemas(), path.read_bytes(), "json", None, out, err)
    assert status == 0, err.getvalue()
    ours = rows_from_decode_json(out.getvalue())
    assert len(ours) == 7
    assert ours == theirs
    assert [row[7] for row in ours if row[4] == MessageType.STREAM_HOLE] == [1 << 20]
