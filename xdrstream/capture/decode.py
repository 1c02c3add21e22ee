"""Describe the messages of a recorded byte stream or packet capture (pure, no I/O).

Input is either a raw byte stream of frames (one direction of a connection, as written
to a socket) or a pcap/pcapng capture (recognised by its magic number) whose TCP
connections are rebuilt by :mod:`xdrstream.capture.pcap`.  Frames are split by
:class:`~xdrstream.protocol.framing.FrameDecoder` (spec.md §3), and each message is
described with the header fields and names, and the body decoded with the schemas that
know its program:

* CALL / MESSAGE: the procedure's arguments; REPLY with status OK: its result;
* REPLY or STREAM with status ERROR: the error body (§4.5), or an abort if it is empty;
* STREAM with status CONTINUE: the payload size (stream data is not XDR);
* STREAM_HOLE: the hole (§7.1.3); V1 stream calls and their replies: the V1 body (§7.2.1).

:meth:`Decoder.describe_frames` describes frames that are already cut apart, both
directions of one connection in wire order (e.g. the lines of a conformance trace).

Messages of a capture come in the order Wireshark shows them: by the number of the packet
that completes each frame (the one that made its bytes contiguous from the stream's
start, so a segment captured out of order does not reorder frames).  A stream that
cannot be decoded further (bad length word, bad header, bytes missing from the capture,
a frame cut off at the end) yields a :class:`StreamFailure` naming the byte offset after
the messages before it.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import enum
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from xdrstream.capture.pcap import (
    FlowDirection,
    TcpFlow,
    TcpStream,
    is_capture,
    reassemble_capture,
)
from xdrstream.codec.errors import DecodeError
from xdrstream.protocol import bodies, schemas
from xdrstream.protocol.errors import ProtocolError, RemoteProtocolError
from xdrstream.protocol.framing import (
    LEN_SIZE,
    MAX_FRAME,
    FrameDecoder,
    Header,
    MessageStatus,
    MessageType,
)
from xdrstream.protocol.programs import (
    Procedure,
    Program,
    Registry,
    Variant,
    programs_from_schema,
)

__all__ = [
    "DEFAULT_SCHEMAS",
    "DecodedMessage",
    "Decoder",
    "StreamFailure",
    "jsonable",
]

#: Schemas every decoder knows: keepalive (message.x), the demo program, libvirt's remote.
DEFAULT_SCHEMAS: tuple[str, ...] = ("message", "restore", "libvirt_remote")


@dataclass(frozen=True)
class DecodedMessage:
    """One frame, described.

    ``offset``: position of the length word in its direction's byte stream; ``packet``:
    number of the capture packet that completed the frame (None for raw streams);
    ``body``: the decoded body as plain JSON-able data, None when there is none or no
    schema knows the procedure; ``body_error``: why the body did not decode.
    """

    header: Header
    length: int
    offset: int
    payload_size: int
    program_name: str | None = None
    procedure_name: str | None = None
    body: Any = None
    body_error: str | None = None
    direction: FlowDirection | None = None
    source: str | None = None
    destination: str | None = None
    packet: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The JSON object of ``xdrstream decode --format json``."""
        header = self.header
        out: dict[str, Any] = {
            "direction": None if self.direction is None else self.direction.value,
            "source": self.source,
            "destination": self.destination,
            "packet": self.packet,
            "offset": self.offset,
            "length": self.length,
            "program": header.prog,
            "version": header.vers,
            "procedure": header.proc,
            "type": int(header.type),
            "serial": header.serial,
            "status": int(header.status),
            "program_name": self.program_name,
            "procedure_name": self.procedure_name,
            "type_name": MessageType(header.type).name,
            "status_name": MessageStatus(header.status).name,
            "payload_size": self.payload_size,
        }
        if self.body is not None:
            out["body"] = self.body
        if self.body_error is not None:
            out["body_error"] = self.body_error
        return out


@dataclass(frozen=True)
class StreamFailure:
    """A byte stream that could not be decoded past ``offset``: the stream's offset, or with
    ``scope`` "file" the capture file's (the capture itself is damaged there); "capture"
    for a failure of the whole capture, at no offset."""

    message: str
    offset: int
    direction: FlowDirection | None = None
    source: str | None = None
    destination: str | None = None
    packet: int | None = None
    scope: Literal["stream", "file", "capture"] = "stream"

    def __str__(self) -> str:
        if self.scope == "file":
            return f"capture file offset {self.offset}: {self.message}"
        if self.scope == "capture":
            return self.message
        where = f"byte offset {self.offset}"
        if self.direction is not None and self.source is not None:
            where = f"{self.direction.value} {self.source} -> {self.destination}, stream {where}"
        elif self.direction is not None:
            where = f"{self.direction.value} stream {where}"
            if self.packet is not None:
                where += f" (packet {self.packet})"
        return f"{where}: {self.message}"


def jsonable(value: Any) -> Any:
    """Codec values as JSON data: structs and unions become objects, enums their names,
    opaque bytes ``{"hex": ...}`` (up to 64 bytes, else ``{"size": n, "base64": ...}``)."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, int):
        return int(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if len(data) <= 64:
            return {"hex": data.hex()}
        return {"size": len(data), "base64": base64.b64encode(data).decode()}
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        if hasattr(value, "_asdict"):
            return jsonable(value._asdict())
        return [jsonable(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    slots = _slot_names(type(value))
    if slots:
        return {name.lstrip("_"): jsonable(getattr(value, name)) for name in slots}
    if hasattr(value, "__dict__"):
        return {k: jsonable(v) for k, v in vars(value).items() if not k.startswith("_")}
    return repr(value)


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else [s for s in slots if s != "__weakref__"]
    return names


@dataclass(frozen=True)
class _RawFrame:
    header: Header
    length: int
    offset: int
    payload: memoryview
    packet: int | None


class _ConnectionState:
    """What body decoding needs to remember across frames: V1 stream calls by serial."""

    def __init__(self) -> None:
        self.v1_calls: dict[int, int] = {}  # serial -> V1 op


class Decoder:
    """Decodes frames with the procedures of the given programs."""

    def __init__(self, programs: Iterable[Program], max_frame: int = MAX_FRAME) -> None:
        self.registry = Registry(programs)
        self.max_frame = max_frame
        self._program_names = {(p.number, p.version): p.name for p in self.registry}

    @classmethod
    def with_schemas(
        cls,
        extra: Sequence[Path] = (),
        names: Sequence[str] = DEFAULT_SCHEMAS,
        programs: Iterable[Program] = (),
        constants: Mapping[str, int | str] | None = None,
    ) -> Decoder:
        """A decoder for the built-in schemas ``names`` plus the ``.x`` files ``extra``
        (compiled with ``constants``, rpcgen's ``-D``) and ``programs``; a later program
        replaces an earlier one of the same number and version (e.g. libvirt's whole
        remote program the built-in subset)."""
        found: list[Program] = []
        for name in names:
            found += programs_from_schema(schemas.load(name))
        if extra:
            from xdrstream.codec import load_schema

            for path in extra:
                try:
                    schema = load_schema(path, constants=constants or {})
                except UnicodeDecodeError as exc:
                    raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
                found += programs_from_schema(schema)
        return cls([*found, *programs])

    # -- input kinds ---------------------------------------------------------------------

    def decode(
        self, data: bytes, port: int | None = None
    ) -> Iterator[DecodedMessage | StreamFailure]:
        """A capture if ``data`` starts with a pcap/pcapng magic number, else a raw stream.

        ``port``: for captures, decode only connections with that TCP port (and take it
        as the server's port when the handshake was not captured).
        """
        if is_capture(data):
            return self.decode_capture(data, port)
        return self.decode_stream(data)

    def decode_stream(self, data: bytes | memoryview) -> Iterator[DecodedMessage | StreamFailure]:
        """The frames of one direction of a connection."""
        frames, failure = self._split(data, None)
        state = _ConnectionState()
        for frame in frames:
            yield self._describe(frame, state)
        if failure is not None:
            yield failure

    def describe_frames(
        self, frames: Iterable[tuple[FlowDirection, bytes | memoryview]]
    ) -> Iterator[DecodedMessage | StreamFailure]:
        """One description per ``(direction, frame bytes)`` of one connection, given in wire
        order with both directions interleaved, each item exactly one frame (length word
        included). V1 stream replies are decoded with the calls they answer (§7.2.1).

        A :class:`DecodedMessage` carries the ``direction`` and its ``offset`` in that
        direction's byte stream; an item that is not exactly one frame gives a
        :class:`StreamFailure` instead (and decoding goes on with the next item).
        """
        state = _ConnectionState()
        offsets = dict.fromkeys(FlowDirection, 0)
        for direction, data in frames:
            start = offsets[direction]
            offsets[direction] += len(data)
            raw, failure = self._split(data, None)
            if failure is None and len(raw) != 1:
                failure = StreamFailure(f"{len(raw)} frames where one was expected", 0)
            if failure is not None:
                yield dataclasses.replace(
                    failure, offset=start + failure.offset, direction=direction
                )
                continue
            message = self._describe(raw[0], state)
            yield dataclasses.replace(message, offset=start, direction=direction)

    def decode_capture(
        self, data: bytes, port: int | None = None
    ) -> Iterator[DecodedMessage | StreamFailure]:
        """The messages of every TCP connection of a capture (see the module docstring).

        Raises :class:`~xdrstream.capture.pcap.CaptureError` if ``data`` is no capture;
        damage later in the file ends the output with a :class:`StreamFailure`.
        """
        reassembly = reassemble_capture(data, server_port=port)
        flows = [
            flow
            for flow in reassembly.flows
            if port is None or port in (flow.client.port, flow.server.port)
        ]
        if port is not None and not flows and reassembly.flows:
            found = sorted({p for f in reassembly.flows for p in (f.client.port, f.server.port)})
            yield StreamFailure(
                f"no TCP connection of the capture uses port {port} (its ports: "
                f"{', '.join(map(str, found))})",
                0,
                scope="capture",
            )
        # Frames of all connections, in the order of the packets that completed them.
        tagged: list[tuple[int, int, int, int, FlowDirection, _RawFrame]] = []
        failures: list[StreamFailure] = []
        for index, flow in enumerate(flows):
            for rank, direction in enumerate(FlowDirection):
                frames, failure = self._frames_of(flow, direction)
                tagged += [
                    (frame.packet or 0, index, rank, frame.offset, direction, frame)
                    for frame in frames
                ]
                if failure is not None:
                    failures.append(failure)
        tagged.sort(key=lambda item: item[:4])
        states = [_ConnectionState() for _ in flows]
        for _packet, index, _rank, _offset, direction, frame in tagged:
            source, destination = _ends(flows[index], direction)
            message = self._describe(frame, states[index])
            yield dataclasses.replace(
                message, direction=direction, source=source, destination=destination
            )
        yield from failures
        if reassembly.error is not None:
            error = reassembly.error
            yield StreamFailure(error.reason, error.offset, scope="file")

    # -- internals -----------------------------------------------------------------------

    def _frames_of(
        self, flow: TcpFlow, direction: FlowDirection
    ) -> tuple[list[_RawFrame], StreamFailure | None]:
        """The frames one side of a connection sent, and why its stream stopped early."""
        stream = flow.stream(direction)
        frames, failure = self._split(stream.data, stream)
        source, destination = _ends(flow, direction)
        if stream.gap_at is not None:
            lost = f"the capture lost {stream.gap_length} bytes of this stream"
            if failure is None:
                failure = StreamFailure(
                    f"{lost} here", stream.gap_at, packet=stream.packet_at(stream.gap_at - 1)
                )
            else:  # most likely the frame was cut by the loss: say so
                failure = dataclasses.replace(
                    failure, message=f"{failure.message}; {lost} at offset {stream.gap_at}"
                )
        if failure is not None:
            failure = dataclasses.replace(
                failure, direction=direction, source=source, destination=destination
            )
        return frames, failure

    def _split(
        self, data: bytes | memoryview, stream: TcpStream | None
    ) -> tuple[list[_RawFrame], StreamFailure | None]:
        """Cut a byte stream into frames; a failure tells where and why it stopped."""
        decoder = FrameDecoder(self.max_frame)
        frames: list[_RawFrame] = []
        decoder.feed(data)
        starts = [] if stream is None else [start for start, _number in stream.packets]
        # Wireshark hands a frame over when its bytes are contiguous from the stream's
        # start: with segments captured out of order that is the highest packet number
        # among all bytes up to the frame's end, not only the frame's own bytes.
        completed = (
            list(itertools.accumulate((n for _s, n in stream.packets), max)) if stream else []
        )
        try:
            while (frame := decoder.next_frame()) is not None:
                length = LEN_SIZE + 24 + len(frame.payload)
                packet = (
                    None
                    if stream is None
                    else _completing_packet(starts, completed, frame.offset + length)
                )
                frames.append(_RawFrame(frame.header, length, frame.offset, frame.payload, packet))
        except RemoteProtocolError as exc:
            offset = exc.offset if exc.offset is not None else decoder.offset
            packet = None if stream is None else stream.packet_at(offset)
            # the failure names the offset itself: the error's text without it
            return frames, StreamFailure(exc.reason, offset, packet=packet)
        if decoder.buffered:
            offset = decoder.offset
            tail = bytes(data[offset : offset + LEN_SIZE])
            if len(tail) < LEN_SIZE:
                reason = f"stream ends inside a length word ({len(tail)} of {LEN_SIZE} bytes)"
            else:
                wanted = int.from_bytes(tail, "big")
                reason = f"stream ends inside a frame: {decoder.buffered} of {wanted} bytes present"
            packet = None if stream is None else stream.packet_at(offset)
            return frames, StreamFailure(reason, offset, packet=packet)
        return frames, None

    def _describe(self, frame: _RawFrame, state: _ConnectionState) -> DecodedMessage:
        header = frame.header
        procedure = self.registry.lookup(header.prog, header.vers, header.proc)
        program_name = self._program_names.get((header.prog, header.vers))
        body: Any = None
        error: str | None = None
        try:
            body = self._body(header, frame.payload, procedure, state)
        except (ProtocolError, DecodeError) as exc:
            error = str(exc)
        return DecodedMessage(
            header=header,
            length=frame.length,
            offset=frame.offset,
            payload_size=len(frame.payload),
            program_name=program_name,
            procedure_name=None if procedure is None else procedure.name or None,
            body=body,
            body_error=error,
            packet=frame.packet,
        )

    def _body(
        self,
        header: Header,
        payload: memoryview,
        procedure: Procedure | None,
        state: _ConnectionState,
    ) -> Any:
        mtype, status = header.type, header.status
        if mtype == MessageType.STREAM_HOLE:
            length, flags = bodies.unpack_hole(payload)
            return {"length": length, "flags": flags}
        if status == MessageStatus.ERROR and mtype in (
            MessageType.REPLY,
            MessageType.REPLY_WITH_FDS,
            MessageType.STREAM,
        ):
            if mtype == MessageType.STREAM and not payload:
                return {"abort": True}
            return jsonable(bodies.unpack_error(payload))
        if mtype == MessageType.STREAM:
            if status == MessageStatus.CONTINUE:
                return {"data_bytes": len(payload)}
            _expect_empty(payload, "a STREAM/OK message")
            return None
        if procedure is None:
            return None
        is_v1 = procedure.stream is not None and procedure.stream.variant is Variant.V1
        if mtype in (MessageType.CALL, MessageType.CALL_WITH_FDS):
            if status == MessageStatus.CONTINUE and is_v1:
                stream, op, arg = bodies.unpack_v1_call(payload)
                state.v1_calls[header.serial] = op
                return _v1_json({"stream": stream, "op": _v1_op_name(op)}, arg)
            return _unpack(procedure.arg, payload, "arguments")
        if mtype == MessageType.MESSAGE:
            return _unpack(procedure.arg, payload, "arguments")
        # REPLY with status OK
        v1_op = state.v1_calls.pop(header.serial, None)
        if v1_op is not None:
            if v1_op == bodies.V1Op.READ:
                op, chunk = bodies.unpack_v1_chunk(payload)
                return _v1_json({"op": _v1_op_name(op)}, chunk)
            _expect_empty(payload, "the reply to a V1 stream call")
            return None
        return _unpack(procedure.result, payload, "result")


def _unpack(codec: Any, payload: memoryview, what: str) -> Any:
    if codec is None:
        _expect_empty(payload, f"void {what}")
        return None
    return jsonable(codec.unpack(payload))


def _expect_empty(payload: memoryview, what: str) -> None:
    if payload:
        raise RemoteProtocolError(
            f"{what} must have an empty payload, got {len(payload)} bytes", section="§4"
        )


def _v1_op_name(op: int) -> str:
    names = {value: name for name, value in vars(bodies.V1Op).items() if name.isupper()}
    return names.get(op, str(op))


def _v1_json(out: dict[str, Any], arg: Any) -> dict[str, Any]:
    if isinstance(arg, bytes | memoryview):
        out["data_bytes"] = len(arg)
    elif isinstance(arg, tuple):
        out["hole"] = {"length": arg[0], "flags": arg[1]}
    elif isinstance(arg, int):
        out["max_bytes"] = arg
    return out


def _ends(flow: TcpFlow, direction: FlowDirection) -> tuple[str, str]:
    if direction is FlowDirection.CLIENT_TO_SERVER:
        return str(flow.client), str(flow.server)
    return str(flow.server), str(flow.client)


def _completing_packet(starts: Sequence[int], completed: Sequence[int], end: int) -> int | None:
    """The packet whose arrival made stream bytes [0, end) contiguous (where Wireshark's
    reassembly reports a frame ending at ``end``): ``completed[i]`` is the highest packet
    number among ``stream.packets[: i + 1]``, ``starts`` their stream offsets."""
    last = bisect.bisect_left(starts, end)
    return completed[last - 1] if last else None
