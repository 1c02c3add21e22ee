"""Packet captures: read pcap/pcapng, reassemble TCP, write synthetic pcapng (pure, no I/O).

Reading
    :func:`read_packets` yields the link-layer packets of a classic pcap file (either byte
    order, micro- or nanosecond timestamps) or of a pcapng file (SHB/IDB/EPB/SPB and the
    obsolete PB, either byte order, several sections).  :func:`parse_tcp` unwraps Ethernet
    (with VLAN tags), Linux cooked capture v1/v2, raw IP and BSD loopback/null link layers,
    then IPv4 or IPv6, down to a TCP segment.  :func:`reassemble` puts the segments of each
    connection back into two byte streams **by sequence number**: retransmissions, overlaps
    and out-of-order segments (all common in loopback captures) are resolved, the SYN and
    FIN sequence numbers are accounted for, and sequence numbers wrap at 2**32.  Bytes that
    the capture lost leave a gap; the stream then ends at the gap and records where.

    A malformed file raises :class:`CaptureError` naming the file offset.  Non-IP and
    non-TCP packets are skipped.  IP fragments are skipped too (TCP over loopback never
    fragments); the bytes they carried show up as a gap.

Writing
    :func:`write_pcapng` builds a pcapng file (Ethernet link type) from synthetic TCP
    connections given as byte chunks per direction, with a handshake, correct sequence and
    acknowledgement numbers, checksums and a FIN exchange, so Wireshark and tshark open it
    like a real capture.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CaptureError",
    "Endpoint",
    "FlowChunk",
    "FlowDirection",
    "LinkType",
    "Packet",
    "Reassembly",
    "SyntheticConnection",
    "TcpFlow",
    "TcpSegment",
    "TcpStream",
    "is_capture",
    "parse_tcp",
    "read_packets",
    "reassemble",
    "reassemble_capture",
    "write_pcapng",
]


class CaptureError(ValueError):
    """The capture file is malformed; ``offset`` is the file offset of the bad bytes."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at file offset {offset})")
        self.reason = message  # without the offset, for callers that name it themselves
        self.offset = offset


class LinkType(enum.IntEnum):
    """The link-layer header types this module understands (tcpdump.org LINKTYPE_*)."""

    NULL = 0  # BSD loopback: 4-byte address family in the capturing host's byte order
    ETHERNET = 1
    RAW_ALT = 12  # DLT_RAW on some BSDs
    RAW = 101
    LOOP = 108  # OpenBSD loopback: address family in network byte order
    LINUX_SLL = 113
    IPV4 = 228
    IPV6 = 229
    LINUX_SLL2 = 276


@dataclass(frozen=True)
class Packet:
    """One captured packet: link-layer bytes as captured (possibly cut at the snap length)."""

    number: int  # 1-based, in file order, as Wireshark numbers frames
    offset: int  # file offset of the record or block holding it
    timestamp: float  # seconds since the epoch
    link_type: int
    data: bytes
    original_length: int


# ---- classic pcap --------------------------------------------------------------------------

_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_PCAP_HEADER_SIZE = 24
_PCAP_RECORD_SIZE = 16


def is_capture(data: bytes) -> bool:
    """True when ``data`` starts with a pcap or pcapng magic number."""
    if len(data) < 4:
        return False
    word_be = int.from_bytes(data[:4], "big")
    word_le = int.from_bytes(data[:4], "little")
    magics = (_PCAP_MAGIC_US, _PCAP_MAGIC_NS, _PCAPNG_SHB)
    return word_be in magics or word_le in magics


def read_packets(data: bytes) -> Iterator[Packet]:
    """The packets of a pcap or pcapng capture, in file order.

    Raises :class:`CaptureError` when the file is not a capture or is malformed; the
    packets before the bad spot have been yielded by then.
    """
    if len(data) < 4:
        raise CaptureError(f"{len(data)} bytes are too short for a capture file header", 0)
    if int.from_bytes(data[:4], "big") == _PCAPNG_SHB:
        return _read_pcapng(data)
    for order in ("<", ">"):
        magic = struct.unpack_from(order + "I", data)[0]
        if magic in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
            return _read_pcap(data, order, nanoseconds=magic == _PCAP_MAGIC_NS)
    raise CaptureError(f"unknown capture magic number 0x{data[:4].hex()}", 0)


def _read_pcap(data: bytes, order: str, nanoseconds: bool) -> Iterator[Packet]:
    if len(data) < _PCAP_HEADER_SIZE:
        raise CaptureError(
            f"pcap file header needs {_PCAP_HEADER_SIZE} bytes, file has {len(data)}", 0
        )
    _, major, _minor, _zone, _sigfigs, _snaplen, network = struct.unpack_from(
        order + "IHHiIII", data
    )
    if major != 2:
        raise CaptureError(f"pcap major version {major} is not 2", 4)
    link_type = network & 0x0FFFFFFF  # the upper bits may carry FCS information
    divisor = 1e9 if nanoseconds else 1e6
    record = struct.Struct(order + "IIII")
    offset = _PCAP_HEADER_SIZE
    number = 0
    while offset < len(data):
        if len(data) - offset < _PCAP_RECORD_SIZE:
            raise CaptureError(
                f"pcap record header cut short: {len(data) - offset} of {_PCAP_RECORD_SIZE} bytes",
                offset,
            )
        seconds, fraction, captured, original = record.unpack_from(data, offset)
        start = offset + _PCAP_RECORD_SIZE
        if captured > len(data) - start:
            raise CaptureError(
                f"pcap record claims {captured} captured bytes, {len(data) - start} remain",
                offset + 8,
            )
        if fraction >= divisor:
            raise CaptureError(f"pcap timestamp fraction {fraction} out of range", offset + 4)
        number += 1
        yield Packet(
            number,
            offset,
            seconds + fraction / divisor,
            link_type,
            data[start : start + captured],
            max(original, captured),
        )
        offset = start + captured


# ---- pcapng --------------------------------------------------------------------------------

_BLOCK_IDB = 0x00000001
_BLOCK_PB = 0x00000002
_BLOCK_SPB = 0x00000003
_BLOCK_EPB = 0x00000006
_OPT_END = 0
_OPT_IF_TSRESOL = 9


@dataclass
class _Interface:
    link_type: int
    snaplen: int
    ticks_per_second: float


def _read_pcapng(data: bytes) -> Iterator[Packet]:
    offset = 0
    order = ">"
    interfaces: list[_Interface] = []
    number = 0
    while offset < len(data):
        if len(data) - offset < 12:
            raise CaptureError(
                f"pcapng block header cut short: {len(data) - offset} of 12 bytes", offset
            )
        if int.from_bytes(data[offset : offset + 4], "big") == _PCAPNG_SHB:
            # A new section: its byte-order magic decides how everything in it is read.
            magic = data[offset + 8 : offset + 12]
            if int.from_bytes(magic, "big") == _PCAPNG_BYTE_ORDER_MAGIC:
                order = ">"
            elif int.from_bytes(magic, "little") == _PCAPNG_BYTE_ORDER_MAGIC:
                order = "<"
            else:
                raise CaptureError(
                    f"pcapng byte-order magic 0x{magic.hex()} is invalid", offset + 8
                )
            interfaces = []
        block_type, total = struct.unpack_from(order + "II", data, offset)
        if total < 12 or total % 4:
            raise CaptureError(f"pcapng block length {total} is invalid", offset + 4)
        if total > len(data) - offset:
            raise CaptureError(
                f"pcapng block of {total} bytes cut short: {len(data) - offset} remain",
                offset + 4,
            )
        (trailer,) = struct.unpack_from(order + "I", data, offset + total - 4)
        if trailer != total:
            raise CaptureError(
                f"pcapng block length {total} disagrees with its trailing copy {trailer}",
                offset + total - 4,
            )
        body = data[offset + 8 : offset + total - 4]
        if block_type == _BLOCK_IDB:
            interfaces.append(_parse_idb(body, order, offset))
        elif block_type in (_BLOCK_EPB, _BLOCK_PB, _BLOCK_SPB):
            number += 1
            yield _parse_packet_block(block_type, body, order, offset, interfaces, number)
        offset += total


def _parse_idb(body: bytes, order: str, offset: int) -> _Interface:
    if len(body) < 8:
        raise CaptureError("pcapng interface description block too short", offset)
    link_type, _reserved, snaplen = struct.unpack_from(order + "HHI", body)
    ticks = 1e6
    for code, value in _options(body, 8, order, offset + 8):
        if code == _OPT_IF_TSRESOL and value:
            resolution = value[0]
            exponent = resolution & 0x7F
            ticks = float(2**exponent) if resolution & 0x80 else float(10**exponent)
    return _Interface(link_type, snaplen, ticks)


def _options(body: bytes, start: int, order: str, base: int) -> Iterator[tuple[int, bytes]]:
    position = start
    while len(body) - position >= 4:
        code, length = struct.unpack_from(order + "HH", body, position)
        if code == _OPT_END:
            return
        value_start = position + 4
        if length > len(body) - value_start:
            raise CaptureError(f"pcapng option {code} overruns its block", base + position)
        yield code, body[value_start : value_start + length]
        position = value_start + (length + 3) // 4 * 4


def _parse_packet_block(
    block_type: int,
    body: bytes,
    order: str,
    offset: int,
    interfaces: Sequence[_Interface],
    number: int,
) -> Packet:
    if block_type == _BLOCK_SPB:
        if len(body) < 4:
            raise CaptureError("pcapng simple packet block too short", offset)
        if not interfaces:
            raise CaptureError("pcapng packet block before any interface block", offset)
        (original,) = struct.unpack_from(order + "I", body)
        interface = interfaces[0]
        limit = interface.snaplen or original
        captured = min(original, limit, len(body) - 4)
        return Packet(number, offset, 0.0, interface.link_type, body[4 : 4 + captured], original)
    if block_type == _BLOCK_EPB:
        header = struct.Struct(order + "IIIII")
    else:  # obsolete Packet Block: 16-bit interface id and drop count
        header = struct.Struct(order + "HHIIII")
    if len(body) < header.size:
        raise CaptureError("pcapng packet block too short", offset)
    fields = header.unpack_from(body)
    interface_id = fields[0]
    high, low, captured, original = fields[-4:]
    if interface_id >= len(interfaces):
        raise CaptureError(
            f"pcapng packet block names unknown interface {interface_id}", offset + 8
        )
    if captured > len(body) - header.size:
        raise CaptureError(
            f"pcapng packet block claims {captured} captured bytes, "
            f"{len(body) - header.size} present",
            offset + 8 + header.size - 8,
        )
    interface = interfaces[interface_id]
    timestamp = ((high << 32) | low) / interface.ticks_per_second
    start = header.size
    return Packet(
        number,
        offset,
        timestamp,
        interface.link_type,
        body[start : start + captured],
        max(original, captured),
    )


# ---- link, IP and TCP layers ---------------------------------------------------------------

_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_ETHERTYPE_VLAN = (0x8100, 0x88A8, 0x9100)
_AF_INET6_VALUES = (10, 24, 28, 30)  # Linux, NetBSD/OpenBSD, FreeBSD, Darwin
_IPPROTO_TCP = 6
_IPV6_EXTENSION_HEADERS = (0, 43, 60)  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10


@dataclass(frozen=True)
class Endpoint:
    """An IP address and TCP port; ``str()`` gives ``1.2.3.4:80`` or ``[::1]:80``."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class TcpSegment:
    """One TCP segment from a packet.  ``missing``: payload bytes not captured (snap length)."""

    packet: int  # packet number
    timestamp: float
    source: Endpoint
    destination: Endpoint
    seq: int
    ack: int
    flags: int
    payload: bytes
    missing: int = 0


def _network_layer(packet: Packet) -> tuple[int, bytes] | None:
    """(IP version, bytes from the IP header on), or None for other protocols."""
    data = packet.data
    link = packet.link_type
    if link == LinkType.ETHERNET:
        position = 12
        if len(data) < position + 2:
            return None
        ethertype = int.from_bytes(data[position : position + 2], "big")
        while ethertype in _ETHERTYPE_VLAN and len(data) >= position + 6:
            position += 4
            ethertype = int.from_bytes(data[position : position + 2], "big")
        return _by_ethertype(ethertype, data[position + 2 :])
    if link == LinkType.LINUX_SLL:
        if len(data) < 16:
            return None
        return _by_ethertype(int.from_bytes(data[14:16], "big"), data[16:])
    if link == LinkType.LINUX_SLL2:
        if len(data) < 20:
            return None
        return _by_ethertype(int.from_bytes(data[0:2], "big"), data[20:])
    if link in (LinkType.RAW, LinkType.RAW_ALT, LinkType.IPV4, LinkType.IPV6):
        if not data:
            return None
        version = data[0] >> 4
        return (version, data) if version in (4, 6) else None
    if link in (LinkType.NULL, LinkType.LOOP):
        if len(data) < 4:
            return None
        if link == LinkType.LOOP:
            family = int.from_bytes(data[:4], "big")
        else:  # host byte order of the capturing machine: the small reading is the right one
            family = min(int.from_bytes(data[:4], "big"), int.from_bytes(data[:4], "little"))
        if family == 2:
            return 4, data[4:]
        if family in _AF_INET6_VALUES:
            return 6, data[4:]
        return None
    return None


def _by_ethertype(ethertype: int, payload: bytes) -> tuple[int, bytes] | None:
    if ethertype == _ETHERTYPE_IPV4:
        return 4, payload
    if ethertype == _ETHERTYPE_IPV6:
        return 6, payload
    return None


def parse_tcp(packet: Packet) -> TcpSegment | None:
    """The TCP segment in ``packet``, or None when it holds something else (or an IP
    fragment, or headers cut short by the snap length)."""
    layer = _network_layer(packet)
    if layer is None:
        return None
    version, ip = layer
    if version == 4:
        if len(ip) < 20 or ip[0] >> 4 != 4:
            return None
        header_length = (ip[0] & 0x0F) * 4
        total_length = int.from_bytes(ip[2:4], "big")
        fragment = int.from_bytes(ip[6:8], "big")
        if ip[9] != _IPPROTO_TCP or header_length < 20 or fragment & 0x3FFF:
            return None
        if total_length == 0:  # TSO on the capturing host: the length is left unset
            total_length = len(ip) + packet.original_length - len(packet.data)
        if total_length < header_length:
            return None
        source = str(ipaddress.IPv4Address(ip[12:16]))
        destination = str(ipaddress.IPv4Address(ip[16:20]))
        tcp_start, ip_end = header_length, total_length
    else:
        if len(ip) < 40 or ip[0] >> 4 != 6:
            return None
        next_header = ip[6]
        ip_end = 40 + int.from_bytes(ip[4:6], "big")
        position = 40
        while next_header in _IPV6_EXTENSION_HEADERS:
            if len(ip) < position + 8:
                return None
            next_header = ip[position]
            position += (ip[position + 1] + 1) * 8
        if next_header != _IPPROTO_TCP:  # includes fragments (44): not reassembled
            return None
        source = str(ipaddress.IPv6Address(ip[8:24]))
        destination = str(ipaddress.IPv6Address(ip[24:40]))
        tcp_start = position
    if len(ip) < tcp_start + 20:
        return None
    sport, dport, seq, ack, offset_flags = struct.unpack_from(">HHIIH", ip, tcp_start)
    data_start = tcp_start + (offset_flags >> 12) * 4
    if data_start - tcp_start < 20 or data_start > ip_end or len(ip) < data_start:
        return None
    payload = ip[data_start:ip_end]  # also drops Ethernet padding after the IP packet
    missing = max(ip_end - data_start - len(payload), 0)
    return TcpSegment(
        packet.number,
        packet.timestamp,
        Endpoint(source, sport),
        Endpoint(destination, dport),
        seq,
        ack,
        offset_flags & 0x1FF,
        payload,
        missing,
    )


# ---- TCP reassembly ------------------------------------------------------------------------

_SEQ_MOD = 1 << 32
_SEQ_HALF = 1 << 31


class FlowDirection(enum.Enum):
    """Which way bytes travel on a connection."""

    CLIENT_TO_SERVER = "client->server"
    SERVER_TO_CLIENT = "server->client"


@dataclass
class TcpStream:
    """The bytes one side of a connection sent, in sequence order.

    ``gap_at``: stream offset where the capture lost bytes (the data ends there), or None.
    ``packets``: (stream offset, packet number) where each stretch of ``data`` came from,
    to point at the packet behind a stream offset (see :meth:`packet_at`).
    ``closed_at``: number of the first packet with this side's FIN or RST, or None.
    """

    data: bytes = b""
    gap_at: int | None = None
    gap_length: int = 0
    packets: list[tuple[int, int]] = field(default_factory=list)
    closed_at: int | None = None
    retransmitted: int = 0  # bytes received again, already covered
    conflicting: int = 0  # overlap bytes that differed from the first copy (first wins)

    def packet_at(self, offset: int) -> int | None:
        """Number of the packet that carried stream byte ``offset``."""
        found: int | None = None
        for start, number in self.packets:
            if start > offset:
                break
            found = number
        return found


@dataclass
class TcpFlow:
    """One TCP connection.  ``client`` is the side that sent the first SYN, or when the
    handshake was not captured, the side with the higher port (see :func:`reassemble`)."""

    client: Endpoint
    server: Endpoint
    to_server: TcpStream
    to_client: TcpStream
    handshake_seen: bool
    first_packet: int

    def stream(self, direction: FlowDirection) -> TcpStream:
        return self.to_server if direction is FlowDirection.CLIENT_TO_SERVER else self.to_client


@dataclass
class _DirectionState:
    segments: list[tuple[int, int, TcpSegment]] = field(default_factory=list)  # abs seq, order
    isn: int | None = None  # sequence number of the SYN
    last: int | None = None  # last unwrapped sequence number seen
    closed: bool = False
    closed_at: int | None = None  # packet number of the first FIN or RST

    def unwrap(self, seq: int) -> int:
        """A 64-bit sequence number from a 32-bit one, following wrap-arounds."""
        if self.last is None:
            self.last = seq + _SEQ_MOD  # room below for segments older than the first seen
            return self.last
        delta = (seq - self.last) % _SEQ_MOD
        if delta >= _SEQ_HALF:
            delta -= _SEQ_MOD
        self.last += delta
        return self.last


@dataclass
class _Connection:
    a: Endpoint  # source of the first packet seen
    b: Endpoint
    first_packet: int
    client: Endpoint | None = None
    states: dict[Endpoint, _DirectionState] = field(default_factory=dict)
    order: int = 0

    def state(self, source: Endpoint) -> _DirectionState:
        return self.states.setdefault(source, _DirectionState())

    def finished(self) -> bool:
        return bool(self.states) and all(s.closed for s in self.states.values())


def reassemble(segments: Iterable[TcpSegment], server_port: int | None = None) -> list[TcpFlow]:
    """Group segments into connections and rebuild both byte streams of each, by sequence
    number.

    The client of a connection is the sender of a SYN without ACK; without a captured
    handshake it is the side whose port is not ``server_port`` (when given), else the side
    with the higher port (ephemeral ports are high).  A SYN arriving on a 4-tuple whose
    connection has finished (FIN or RST both ways) starts a new connection.  Overlapping
    bytes are taken from the segment captured first; conflicting copies are counted.
    """
    active: dict[frozenset[Endpoint], _Connection] = {}
    connections: list[_Connection] = []
    for segment in segments:
        key = frozenset((segment.source, segment.destination))
        connection = active.get(key)
        syn_only = segment.flags & TCP_SYN and not segment.flags & TCP_ACK
        if connection is None or (syn_only and connection.finished()):
            connection = _Connection(segment.source, segment.destination, segment.packet)
            active[key] = connection
            connections.append(connection)
        if syn_only and connection.client is None:
            connection.client = segment.source
        state = connection.state(segment.source)
        position = state.unwrap(segment.seq)
        if segment.flags & TCP_SYN:
            state.isn = position
            position += 1  # the SYN occupies one sequence number
        if segment.flags & (TCP_FIN | TCP_RST):
            state.closed = True
            if state.closed_at is None:
                state.closed_at = segment.packet
        if segment.payload or segment.missing:
            state.segments.append((position, connection.order, segment))
            connection.order += 1
    return [_finish(connection, server_port) for connection in connections]


def _finish(connection: _Connection, server_port: int | None) -> TcpFlow:
    client = connection.client
    if client is None:
        a, b = connection.a, connection.b
        if server_port is not None and server_port in (a.port, b.port):
            client = b if a.port == server_port else a
        else:
            client = a if a.port > b.port else b
    server = connection.b if client == connection.a else connection.a
    return TcpFlow(
        client=client,
        server=server,
        to_server=_rebuild(connection.states.get(client)),
        to_client=_rebuild(connection.states.get(server)),
        handshake_seen=connection.client is not None,
        first_packet=connection.first_packet,
    )


def _rebuild(state: _DirectionState | None) -> TcpStream:
    stream = TcpStream(closed_at=None if state is None else state.closed_at)
    if state is None or not state.segments:
        return stream
    ordered = sorted(state.segments, key=lambda item: (item[0], item[1]))
    base = state.isn + 1 if state.isn is not None else ordered[0][0]
    assembled = bytearray()
    for position, _order, segment in ordered:
        cursor = base + len(assembled)  # next sequence number wanted
        payload = segment.payload
        if position > cursor:
            stream.gap_at, stream.gap_length = cursor - base, position - cursor
            break
        overlap = min(cursor - position, len(payload))
        if overlap:
            stream.retransmitted += overlap
            start = position - base
            if start < 0:  # bytes before the first expected one (e.g. over the SYN)
                payload, position, overlap = payload[-start:], base, overlap + start
                start = 0
            old = assembled[start : start + overlap]
            stream.conflicting += sum(1 for x, y in zip(old, payload, strict=False) if x != y)
        fresh = payload[max(cursor - position, 0) :]
        if fresh:
            stream.packets.append((len(assembled), segment.packet))
            assembled += fresh
        if segment.missing and position + len(payload) + segment.missing > base + len(assembled):
            stream.gap_at = len(assembled)
            stream.gap_length = position + len(payload) + segment.missing - base - len(assembled)
            break
    stream.data = bytes(assembled)
    return stream


@dataclass
class Reassembly:
    """Connections rebuilt from a capture; ``error``: why reading stopped early, if it did
    (the flows then hold what the packets before the bad spot carried)."""

    flows: list[TcpFlow]
    packets: int
    error: CaptureError | None = None


def reassemble_capture(data: bytes, server_port: int | None = None) -> Reassembly:
    """Read a pcap/pcapng capture and rebuild its TCP connections (see :func:`reassemble`).

    A file that is not a capture at all raises :class:`CaptureError`; damage later in the
    file is reported in ``Reassembly.error`` after the packets before it.
    """
    packets = read_packets(data)
    segments: list[TcpSegment] = []
    count = 0
    error: CaptureError | None = None
    try:
        for packet in packets:
            count += 1
            segment = parse_tcp(packet)
            if segment is not None:
                segments.append(segment)
    except CaptureError as exc:
        if count == 0 and exc.offset == 0:
            raise
        error = exc
    return Reassembly(reassemble(segments, server_port), count, error)


# ---- writing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowChunk:
    """Bytes one side wrote, in the order they went on the wire."""

    direction: FlowDirection
    data: bytes
    timestamp: float | None = None  # seconds; None: 1 ms after the previous packet


@dataclass(frozen=True)
class SyntheticConnection:
    """A TCP connection to synthesise: endpoints and the chunks each side sent."""

    client: Endpoint
    server: Endpoint
    chunks: Sequence[FlowChunk]
    start: float = 0.0  # timestamp of the SYN


_MAX_SEGMENT = 32768
_CLIENT_MAC = bytes.fromhex("020000000001")
_SERVER_MAC = bytes.fromhex("020000000002")
_STEP = 0.001


def _ones_complement_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    # 2**16 is 1 modulo 0xFFFF, so the big number's residue is the sum of its 16-bit words.
    total = int.from_bytes(data, "big") % 0xFFFF
    return total if total or not any(data) else 0xFFFF


def _checksum(data: bytes) -> int:
    return (~_ones_complement_sum(data)) & 0xFFFF


@dataclass
class _Side:
    endpoint: Endpoint
    mac: bytes
    seq: int


def _ip_packet(
    source: Endpoint, destination: Endpoint, tcp: bytes, ident: int
) -> tuple[int, bytes]:
    src = ipaddress.ip_address(source.host)
    dst = ipaddress.ip_address(destination.host)
    if src.version != dst.version:
        raise ValueError(f"address families differ: {source.host} and {destination.host}")
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack(">BBH", 0, _IPPROTO_TCP, len(tcp))
        tcp = tcp[:16] + struct.pack(">H", _checksum(pseudo + tcp)) + tcp[18:]
        header = struct.pack(
            ">BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(tcp),
            ident & 0xFFFF,
            0x4000,  # don't fragment
            64,
            _IPPROTO_TCP,
            0,
            src.packed,
            dst.packed,
        )
        header = header[:10] + struct.pack(">H", _checksum(header)) + header[12:]
        return _ETHERTYPE_IPV4, header + tcp
    pseudo = src.packed + dst.packed + struct.pack(">I3xB", len(tcp), _IPPROTO_TCP)
    tcp = tcp[:16] + struct.pack(">H", _checksum(pseudo + tcp)) + tcp[18:]
    header = struct.pack(">IHBB16s16s", 6 << 28, len(tcp), _IPPROTO_TCP, 64, src.packed, dst.packed)
    return _ETHERTYPE_IPV6, header + tcp


def _epb(timestamp: float, frame: bytes) -> bytes:
    ticks = round(timestamp * 1e6)
    padded = frame + b"\0" * (-len(frame) % 4)
    total = 32 + len(padded)
    return (
        struct.pack(
            ">IIIIIII",
            _BLOCK_EPB,
            total,
            0,
            ticks >> 32,
            ticks & 0xFFFFFFFF,
            len(frame),
            len(frame),
        )
        + padded
        + struct.pack(">I", total)
    )


def write_pcapng(connections: Sequence[SyntheticConnection]) -> bytes:
    """A pcapng capture (big-endian, one Ethernet interface, microsecond timestamps) of the
    given connections, one after the other: SYN, SYN/ACK, ACK, the chunks as PSH/ACK
    segments of at most 32 KiB, then FIN/ACK from each side and a last ACK.

    Raises ValueError for endpoints that are not IP addresses, mix IPv4 and IPv6, or have
    a port outside 0..65535.
    """
    shb_body = struct.pack(">IHHq", _PCAPNG_BYTE_ORDER_MAGIC, 1, 0, -1)
    out = [struct.pack(">II", _PCAPNG_SHB, 12 + len(shb_body)), shb_body]
    out.append(struct.pack(">I", 12 + len(shb_body)))
    idb_body = struct.pack(">HHI", LinkType.ETHERNET, 0, 0)
    out += [struct.pack(">II", _BLOCK_IDB, 12 + len(idb_body)), idb_body]
    out.append(struct.pack(">I", 12 + len(idb_body)))
    ident = 0
    for connection in connections:
        for end in (connection.client, connection.server):
            if not 0 <= end.port <= 0xFFFF:
                raise ValueError(f"TCP port {end.port} of {end.host} is not in 0..65535")
        client = _Side(connection.client, _CLIENT_MAC, 0x1000_0000)
        server = _Side(connection.server, _SERVER_MAC, 0xF000_0000)
        clock = connection.start

        def emit(sender: _Side, receiver: _Side, flags: int, payload: bytes, when: float) -> None:
            nonlocal ident
            ack = receiver.seq if flags & TCP_ACK else 0
            tcp = struct.pack(
                ">HHIIHHHH",
                sender.endpoint.port,
                receiver.endpoint.port,
                sender.seq % _SEQ_MOD,
                ack % _SEQ_MOD,
                (5 << 12) | flags,
                65535,
                0,
                0,
            )
            ethertype, ip = _ip_packet(sender.endpoint, receiver.endpoint, tcp + payload, ident)
            ident += 1
            frame = receiver.mac + sender.mac + struct.pack(">H", ethertype) + ip
            out.append(_epb(when, frame))
            sender.seq += len(payload) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)

        emit(client, server, TCP_SYN, b"", clock)
        emit(server, client, TCP_SYN | TCP_ACK, b"", clock + _STEP)
        clock += 2 * _STEP
        emit(client, server, TCP_ACK, b"", clock)
        for chunk in connection.chunks:
            clock = chunk.timestamp if chunk.timestamp is not None else clock + _STEP
            sender, receiver = (
                (client, server)
                if chunk.direction is FlowDirection.CLIENT_TO_SERVER
                else (server, client)
            )
            view = chunk.data
            for start in range(0, len(view), _MAX_SEGMENT):
                emit(sender, receiver, TCP_PSH | TCP_ACK, view[start : start + _MAX_SEGMENT], clock)
        emit(client, server, TCP_FIN | TCP_ACK, b"", clock + _STEP)
        emit(server, client, TCP_FIN | TCP_ACK, b"", clock + 2 * _STEP)
        emit(client, server, TCP_ACK, b"", clock + 3 * _STEP)
    return b"".join(out)
