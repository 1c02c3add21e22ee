"""V2 is libvirt's protocol byte for byte (spec.md §7.3): real virsh <-> libvirtd 9.0
sessions (tests/fixtures/libvirt/*.pcapng) replayed through a client and a server engine.

Each captured frame, in capture order, is received by the engine on its receiving side; the
resulting event, sent by the engine on the other side, must give back exactly the captured
bytes.  So the engines accept everything libvirt sends, and produce what libvirt produces.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from xdrstream.capture.pcap import FlowDirection, TcpStream, reassemble_capture
from xdrstream.protocol import NEED_DATA, Connection, Role, schemas
from xdrstream.protocol.events import Call, StreamData, StreamEnd, StreamFinish

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "libvirt"
CAPTURES = sorted(FIXTURES.glob("*.pcapng"))
REMOTE = schemas.load("libvirt_remote")


def frames_with_order(stream: TcpStream, direction: FlowDirection) -> list[tuple[int, int, bytes]]:
    """(packet number of the frame's last byte, offset, frame bytes) for each whole frame."""
    out = []
    offset = 0
    data = stream.data
    while offset + 4 <= len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        if offset + length > len(data):
            break
        packet = stream.packet_at(offset + length - 1)
        assert packet is not None
        out.append((packet, offset, data[offset : offset + length]))
        offset += length
    return out


def replay(path: Path) -> list[str]:
    flows = reassemble_capture(path.read_bytes()).flows
    assert flows, f"{path.name}: no TCP connection"
    log: list[str] = []
    for flow in flows:
        client = Connection(Role.CLIENT, [REMOTE])
        server = Connection(Role.SERVER, [REMOTE])
        merged = [
            (packet, 0 if d is FlowDirection.CLIENT_TO_SERVER else 1, offset, frame, d)
            for d in FlowDirection
            for packet, offset, frame in frames_with_order(flow.stream(d), d)
        ]
        for _packet, _order, _offset, frame, direction in sorted(merged, key=lambda m: m[:3]):
            receiver, sender = (
                (server, client)
                if direction is FlowDirection.CLIENT_TO_SERVER
                else (client, server)
            )
            receiver.receive_data(frame)
            event = receiver.next_event()
            assert event is not NEED_DATA
            assert receiver.next_event() is NEED_DATA
            assert sender.send(event) == frame, (path.name, event)  # type: ignore[arg-type]
            log.append(type(event).__name__)
            if isinstance(event, Call):
                log[-1] += f" {event.procedure}"
            if isinstance(event, StreamData):
                receiver.stream_consumed(event.serial, len(event.data))
    return log


@pytest.mark.parametrize("path", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_capture_replays_byte_for_byte(path: Path) -> None:
    log = replay(path)
    if not log:
        pytest.skip(f"{path.name} holds no libvirt frames")
    assert log[0] == "Call 66"  # every virsh session starts with AUTH_LIST


def test_screenshot_download_sequence() -> None:
    log = replay(FIXTURES / "screenshot.pcapng")
    i = log.index("Call 211")
    # call, reply, one data message, EOF (empty CONTINUE), client finish, server confirm
    assert log[i : i + 6] == [
        "Call 211",
        "Reply",
        "StreamData",
        StreamEnd.__name__,
        StreamFinish.__name__,
        "StreamConfirm",
    ]


def test_sparse_upload_has_holes() -> None:
    log = replay(FIXTURES / "vol-upload-sparse.pcapng")
    assert "StreamHole" in log and "Call 208" in log
    assert log[log.index("StreamFinish") + 1] == "StreamConfirm"
