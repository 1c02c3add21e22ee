"""pcap/pcapng reading and TCP reassembly on captures crafted byte by byte.

The captures here are built by this file's own small writer (independent of
``xdrstream.capture.pcap.write_pcapng``), so the reader is checked against the file
formats, not against itself.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
import struct
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdrstream.capture.pcap import (
    CaptureError,
    Endpoint,
    LinkType,
    TcpFlow,
    is_capture,
    read_packets,
    reassemble_capture,
)

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

CLIENT = Endpoint("10.0.0.1", 40000)
SERVER = Endpoint("10.0.0.2", 16509)
CLIENT6 = Endpoint("fd00::1", 40000)
SERVER6 = Endpoint("fd00::2", 16509)


# ---- a small independent capture writer ------------------------------------------------------


@dataclass(frozen=True)
class Seg:
    """A TCP segment to put in a crafted capture."""

    src: Endpoint
    dst: Endpoint
    seq: int
    flags: int = PSH | ACK
    payload: bytes = b""
    ack: int = 0


def tcp_bytes(seg: Seg) -> bytes:
    header = struct.pack(
        ">HHIIHHHH",
        seg.src.port,
        seg.dst.port,
        seg.seq % 2**32,
        seg.ack % 2**32,
        (5 << 12) | seg.flags,
        65535,
        0,
        0,
    )
    return header + seg.payload


def ip_bytes(seg: Seg, ipv6_options: bool = False) -> bytes:
    tcp = tcp_bytes(seg)
    src, dst = ipaddress.ip_address(seg.src.host), ipaddress.ip_address(seg.dst.host)
    if src.version == 4:
        return (
            struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0)
            + src.packed
            + dst.packed
            + tcp
        )
    if ipv6_options:  # a hop-by-hop options header (8 bytes of padding options) before TCP
        extension = bytes([6, 0, 1, 4, 0, 0, 0, 0])
        return (
            struct.pack(">IHBB", 6 << 28, len(extension) + len(tcp), 0, 64)
            + src.packed
            + dst.packed
            + extension
            + tcp
        )
    return struct.pack(">IHBB", 6 << 28, len(tcp), 6, 64) + src.packed + dst.packed + tcp


def frame_bytes(link: int, ip: bytes, order: str = "<") -> bytes:
    version = ip[0] >> 4
    ethertype = 0x0800 if version == 4 else 0x86DD
    if link == LinkType.ETHERNET:
        frame = b"\x02" * 6 + b"\x04" * 6 + struct.pack(">H", ethertype) + ip
        return frame + b"\0" * max(0, 60 - len(frame))  # short frames are padded
    if link == LinkType.LINUX_SLL:
        return struct.pack(">HHH8sH", 0, 772, 6, b"\0" * 8, ethertype) + ip
    if link == LinkType.LINUX_SLL2:
        return struct.pack(">HHIHBB8s", ethertype, 0, 1, 772, 0, 6, b"\0" * 8) + ip
    if link == LinkType.RAW:
        return ip
    if link == LinkType.NULL:  # address family in the capturing host's byte order
        return struct.pack(order + "I", 2 if version == 4 else 30) + ip
    if link == LinkType.LOOP:
        return struct.pack(">I", 2 if version == 4 else 24) + ip
    raise AssertionError(link)


def pcap_file(
    frames: list[bytes],
    link: int,
    order: str = "<",
    nanoseconds: bool = False,
    originals: list[int] | None = None,
) -> bytes:
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, link)]
    for index, frame in enumerate(frames):
        original = originals[index] if originals else len(frame)
        out.append(struct.pack(order + "IIII", 1000 + index, 500, len(frame), original) + frame)
    return b"".join(out)


def block(order: str, kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = 12 + len(body)
    return struct.pack(order + "II", kind, total) + body + struct.pack(order + "I", total)


def shb(order: str) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(order: str, link: int, tsresol: int | None = None) -> bytes:
    options = b""
    if tsresol is not None:
        options = struct.pack(order + "HH", 9, 1) + bytes([tsresol, 0, 0, 0])
        options += struct.pack(order + "HH", 0, 0)
    return block(order, 1, struct.pack(order + "HHI", link, 0, 0) + options)


def epb(order: str, frame: bytes, ticks: int = 0, interface: int = 0) -> bytes:
    head = struct.pack(
        order + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)
    )
    return block(order, 6, head + frame)


def spb(order: str, frame: bytes) -> bytes:
    return block(order, 3, struct.pack(order + "I", len(frame)) + frame)


def pcapng_file(frames: list[bytes], link: int, order: str = "<", simple: bool = False) -> bytes:
    out = [shb(order), idb(order, link)]
    out += [spb(order, f) if simple else epb(order, f, ticks=i) for i, f in enumerate(frames)]
    return b"".join(out)


def session(
    client: Endpoint = CLIENT,
    server: Endpoint = SERVER,
    request: bytes = b"hello server",
    response: bytes = b"hello client, longer",
    client_isn: int = 1000,
    server_isn: int = 5000,
) -> list[Seg]:
    """A complete small connection: handshake, one request, one response, FIN both ways."""
    c, s = client_isn, server_isn
    return [
        Seg(client, server, c, SYN),
        Seg(server, client, s, SYN | ACK, ack=c + 1),
        Seg(client, server, c + 1, ACK, ack=s + 1),
        Seg(client, server, c + 1, PSH | ACK, request, ack=s + 1),
        Seg(server, client, s + 1, PSH | ACK, response, ack=c + 1 + len(request)),
        Seg(client, server, c + 1 + len(request), FIN | ACK),
        Seg(server, client, s + 1 + len(response), FIN | ACK),
        Seg(client, server, c + 2 + len(request), ACK),
    ]


def flows_of(segments: list[Seg], server_port: int | None = None) -> list[TcpFlow]:
    frames = [frame_bytes(LinkType.RAW, ip_bytes(seg)) for seg in segments]
    result = reassemble_capture(pcap_file(frames, LinkType.RAW), server_port=server_port)
    assert result.error is None
    return result.flows


def only_flow(segments: list[Seg], server_port: int | None = None) -> TcpFlow:
    flows = flows_of(segments, server_port)
    assert len(flows) == 1
    return flows[0]


# ---- file formats and link layers ------------------------------------------------------------

LINKS = [
    LinkType.ETHERNET,
    LinkType.LINUX_SLL,
    LinkType.LINUX_SLL2,
    LinkType.RAW,
    LinkType.NULL,
    LinkType.LOOP,
]


@pytest.mark.parametrize("link", LINKS, ids=lambda link: link.name)
@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize(
    "fmt", ["pcap-le", "pcap-be", "pcap-ns", "pcapng-le", "pcapng-be", "pcapng-spb"]
)
def test_every_format_link_and_ip_version(link: LinkType, ipv6: bool, fmt: str) -> None:
    client, server = (CLIENT6, SERVER6) if ipv6 else (CLIENT, SERVER)
    order = ">" if fmt.endswith("be") else "<"
    frames = [
        frame_bytes(link, ip_bytes(seg, ipv6_options=ipv6), order)
        for seg in session(client, server)
    ]
    if fmt.startswith("pcapng"):
        data = pcapng_file(frames, link, order, simple=fmt == "pcapng-spb")
    else:
        data = pcap_file(frames, link, order, nanoseconds=fmt == "pcap-ns")
    assert is_capture(data)
    result = reassemble_capture(data)
    assert result.error is None and result.packets == len(frames)
    (flow,) = result.flows
    assert (flow.client, flow.server, flow.handshake_seen) == (client, server, True)
    assert flow.to_server.data == b"hello server"
    assert flow.to_client.data == b"hello client, longer"
    assert flow.to_server.gap_at is None and flow.to_client.gap_at is None
    assert str(flow.server) == ("[fd00::2]:16509" if ipv6 else "10.0.0.2:16509")


def test_timestamps_follow_the_resolution() -> None:
    frame = frame_bytes(LinkType.RAW, ip_bytes(Seg(CLIENT, SERVER, 1, payload=b"x")))
    (micro,) = read_packets(pcap_file([frame], LinkType.RAW))
    (nano,) = read_packets(pcap_file([frame], LinkType.RAW, nanoseconds=True))
    assert micro.timestamp == pytest.approx(1000.0005)
    assert nano.timestamp == pytest.approx(1000.0000005)
    order = "<"
    data = (
        shb(order) + idb(order, LinkType.RAW, tsresol=0x80 | 10) + epb(order, frame, ticks=3 * 1024)
    )
    (binary,) = read_packets(data)
    assert binary.timestamp == pytest.approx(3.0)
    data = shb(order) + idb(order, LinkType.RAW, tsresol=9) + epb(order, frame, ticks=2_500_000_000)
    (decimal,) = read_packets(data)
    assert decimal.timestamp == pytest.approx(2.5)


def test_pcapng_sections_may_change_byte_order() -> None:
    first = session(request=b"first", response=b"one")
    second = session(
        client=Endpoint("10.0.0.3", 40001), request=b"second", response=b"two", client_isn=7
    )
    raw = [frame_bytes(LinkType.RAW, ip_bytes(seg)) for seg in first]
    eth = [frame_bytes(LinkType.ETHERNET, ip_bytes(seg)) for seg in second]
    data = pcapng_file(raw, LinkType.RAW, "<") + pcapng_file(eth, LinkType.ETHERNET, ">")
    result = reassemble_capture(data)
    assert [flow.to_server.data for flow in result.flows] == [b"first", b"second"]
    assert [flow.to_client.data for flow in result.flows] == [b"one", b"two"]


def test_other_packets_are_skipped() -> None:
    udp = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 17, 0, bytes(4), bytes(4))
    udp += bytes(8)
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(28)
    vlan_ip = ip_bytes(Seg(CLIENT, SERVER, 1, payload=b"tagged"))
    vlan = b"\x02" * 6 + b"\x04" * 6 + b"\x81\x00\x00\x05\x08\x00" + vlan_ip
    frames = [frame_bytes(LinkType.ETHERNET, udp), arp, vlan, b"\x00"]
    result = reassemble_capture(pcap_file(frames, LinkType.ETHERNET))
    assert result.packets == 4
    (flow,) = result.flows
    assert flow.to_server.data == b"tagged"


# ---- reassembly ---------------------------------------------------------------------------


def test_out_of_order_retransmitted_and_overlapping_segments() -> None:
    data = bytes(range(200))
    c = 3_000_000
    segments = [
        Seg(CLIENT, SERVER, c, SYN),
        Seg(SERVER, CLIENT, 9, SYN | ACK, ack=c + 1),
        Seg(CLIENT, SERVER, c + 1 + 100, payload=data[100:150]),  # out of order
        Seg(CLIENT, SERVER, c + 1, payload=data[:60]),
        Seg(CLIENT, SERVER, c + 1, payload=data[:60]),  # retransmitted
        Seg(CLIENT, SERVER, c + 1 + 40, payload=data[40:120]),  # overlaps both sides
        Seg(CLIENT, SERVER, c + 1 + 150, payload=data[150:]),
        Seg(CLIENT, SERVER, c + 1 + 140, payload=data[140:170]),  # inside what is known
    ]
    flow = only_flow(segments)
    assert flow.to_server.data == data
    assert flow.to_server.gap_at is None
    assert flow.to_server.retransmitted == 60 + 20 + 20 + 30
    assert flow.to_server.conflicting == 0


def test_sequence_numbers_wrap_around() -> None:
    data = b"abcdefghijklmnopqrstuvwxyz" * 10
    isn = 2**32 - 100  # the stream crosses 2**32 after 99 bytes
    segments = [Seg(CLIENT, SERVER, isn, SYN)]
    segments += [
        Seg(CLIENT, SERVER, isn + 1 + start, payload=data[start : start + 37])
        for start in reversed(range(0, len(data), 37))
    ]
    segments.append(Seg(CLIENT, SERVER, isn + 1 + len(data), FIN | ACK))
    flow = only_flow(segments)
    assert flow.to_server.data == data


def test_lost_segment_leaves_a_gap() -> None:
    segments = [
        Seg(CLIENT, SERVER, 10, SYN),
        Seg(CLIENT, SERVER, 11, payload=b"0123456789"),
        Seg(CLIENT, SERVER, 31, payload=b"after the gap"),
    ]
    stream = only_flow(segments).to_server
    assert stream.data == b"0123456789"
    assert (stream.gap_at, stream.gap_length) == (10, 10)


def test_bytes_cut_by_the_snap_length_leave_a_gap() -> None:
    seg = Seg(CLIENT, SERVER, 100, payload=b"A" * 50)
    frame = frame_bytes(LinkType.RAW, ip_bytes(seg))
    cut = frame[:-20]
    result = reassemble_capture(pcap_file([cut], LinkType.RAW, originals=[len(frame)]))
    stream = result.flows[0].to_server
    assert stream.data == b"A" * 30
    assert (stream.gap_at, stream.gap_length) == (30, 20)


def test_first_copy_wins_a_conflicting_retransmission() -> None:
    segments = [
        Seg(CLIENT, SERVER, 0, SYN),
        Seg(CLIENT, SERVER, 1, payload=b"original"),
        Seg(CLIENT, SERVER, 1, payload=b"ORIGINAL and more"),
    ]
    stream = only_flow(segments).to_server
    assert stream.data == b"original and more"
    assert stream.conflicting == 8


def test_client_without_a_handshake() -> None:
    segments = [
        Seg(SERVER, CLIENT, 500, payload=b"server speaks first"),
        Seg(CLIENT, SERVER, 900, payload=b"client"),
    ]
    flow = only_flow(segments)
    assert not flow.handshake_seen
    assert (flow.client, flow.server) == (CLIENT, SERVER)  # the higher port is the client
    assert flow.to_server.data == b"client"
    # a server port given by the caller wins over the port heuristic
    flow = only_flow(segments, server_port=40000)
    assert flow.server == CLIENT and flow.to_server.data == b"server speaks first"


def test_each_side_s_close_is_the_packet_of_its_first_fin_or_rst() -> None:
    flow = only_flow(session())  # packets 6 and 7 are the FINs
    assert (flow.to_server.closed_at, flow.to_client.closed_at) == (6, 7)
    reset = [*session()[:5], Seg(SERVER, CLIENT, 5001 + 20, RST), Seg(SERVER, CLIENT, 5021, RST)]
    flow = only_flow(reset)
    assert (flow.to_server.closed_at, flow.to_client.closed_at) == (None, 6)


def test_reused_four_tuple_is_a_new_connection() -> None:
    first = session(request=b"first", client_isn=100)
    second = session(request=b"second", response=b"again", client_isn=90_000, server_isn=7)
    flows = flows_of(first + second)
    assert [(f.to_server.data, f.to_client.data) for f in flows] == [
        (b"first", b"hello client, longer"),
        (b"second", b"again"),
    ]
    assert flows[1].first_packet == len(first) + 1


def test_packet_at_points_to_the_packet_of_a_byte() -> None:
    segments = [
        Seg(CLIENT, SERVER, 0, SYN),
        Seg(CLIENT, SERVER, 11, payload=b"world"),
        Seg(CLIENT, SERVER, 1, payload=b"hello, the"),
    ]
    stream = only_flow(segments).to_server
    assert stream.data == b"hello, theworld"
    assert [stream.packet_at(i) for i in (0, 9, 10, 14)] == [3, 3, 2, 2]


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=3000),
    isn=st.integers(0, 2**32 - 1),
    seed=st.integers(0, 2**32),
    with_syn=st.booleans(),
)
def test_any_segmentation_and_order_reassembles(
    data: bytes, isn: int, seed: int, with_syn: bool
) -> None:
    """Random cuts, shuffled, with duplicates and overlapping re-sends: same bytes back."""
    rng = random.Random(seed)
    cuts = sorted({0, len(data), *(rng.randrange(len(data)) for _ in range(rng.randrange(8)))})
    pieces = list(itertools.pairwise(cuts))
    for _ in range(rng.randrange(4)):  # re-sends covering random ranges
        start = rng.randrange(len(data))
        pieces.append((start, rng.randrange(start + 1, len(data) + 1)))
    rng.shuffle(pieces)
    first = isn + 1 if with_syn else isn
    segments = [Seg(CLIENT, SERVER, isn, SYN)] if with_syn else []
    segments += [Seg(CLIENT, SERVER, first + a, payload=data[a:b]) for a, b in pieces]
    if not with_syn:  # the first captured segment must not be the lowest one
        segments.append(Seg(CLIENT, SERVER, first, payload=data[: cuts[1]]))
    stream = only_flow(segments, server_port=SERVER.port).to_server
    assert stream.data == data
    assert stream.gap_at is None
    assert stream.conflicting == 0


# ---- malformed files -------------------------------------------------------------------------


def good_pcap() -> bytes:
    frames = [frame_bytes(LinkType.RAW, ip_bytes(seg)) for seg in session()]
    return pcap_file(frames, LinkType.RAW)


def good_pcapng() -> bytes:
    frames = [frame_bytes(LinkType.RAW, ip_bytes(seg)) for seg in session()]
    return pcapng_file(frames, LinkType.RAW)


def test_not_a_capture() -> None:
    with pytest.raises(CaptureError, match=r"unknown capture magic number 0x00000000 .*offset 0"):
        reassemble_capture(bytes(64))
    with pytest.raises(CaptureError, match="too short"):
        list(read_packets(b"\xd4\xc3"))
    assert not is_capture(b"\x00\x00\x00\x1c")


def test_pcap_record_cut_short_keeps_earlier_packets() -> None:
    data = good_pcap()
    records = 24 + 16 + len(frame_bytes(LinkType.RAW, ip_bytes(session()[0])))
    result = reassemble_capture(data[: records + 10])
    assert result.packets == 1
    assert result.error is not None and result.error.offset == records
    assert "record header cut short" in str(result.error)


def test_pcap_record_longer_than_the_file() -> None:
    data = good_pcap()
    last = data.rfind(struct.pack("<I", 1007))  # timestamp of the 8th (last) record
    result = reassemble_capture(data[:-1])
    assert result.packets == 7
    assert result.error is not None and result.error.offset == last + 8
    assert "claims" in str(result.error)


def test_pcap_wrong_version() -> None:
    data = bytearray(good_pcap())
    data[4:6] = struct.pack("<H", 3)
    with pytest.raises(CaptureError, match=r"major version 3 .*offset 4"):
        list(read_packets(bytes(data)))


@pytest.mark.parametrize(
    ("mutate", "offset", "message"),
    [
        (lambda d: d[:8] + b"\0\0\0\0" + d[12:], 8, "byte-order magic"),
        (lambda d: d[:4] + struct.pack("<I", 13) + d[8:], 4, "block length 13 is invalid"),
        (lambda d: d[:4] + struct.pack("<I", 8) + d[8:], 4, "block length 8 is invalid"),
        (lambda d: d[:-4] + struct.pack("<I", 0), None, "disagrees with its trailing copy"),
        (lambda d: d[:-2], None, "cut short"),
    ],
    ids=["magic", "unaligned", "small", "trailer", "truncated"],
)
def test_pcapng_damage_names_the_offset(mutate, offset: int | None, message: str) -> None:  # type: ignore[no-untyped-def]
    data = mutate(good_pcapng())
    with pytest.raises(CaptureError, match=message) as info:
        list(read_packets(data))
    if offset is not None:
        assert info.value.offset == offset
    else:
        assert 0 < info.value.offset < len(data)


def test_pcapng_packet_for_unknown_interface() -> None:
    order = "<"
    frame = frame_bytes(LinkType.RAW, ip_bytes(session()[0]))
    data = shb(order) + idb(order, LinkType.RAW) + epb(order, frame, interface=3)
    with pytest.raises(CaptureError, match="unknown interface 3") as info:
        list(read_packets(data))
    assert info.value.offset == len(shb(order)) + len(idb(order, LinkType.RAW)) + 8


def test_data_in_a_syn_follows_its_sequence_number() -> None:
    segments = [
        Seg(CLIENT, SERVER, 77, SYN, payload=b"fast open "),
        Seg(CLIENT, SERVER, 88, payload=b"and the rest"),
    ]
    assert only_flow(segments).to_server.data == b"fast open and the rest"
