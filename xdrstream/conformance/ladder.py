"""Human views of a trace: a decoded ladder diagram and a pcapng capture.

:func:`render` prints one row per frame: client on the left, server on the right, an arrow
showing who sent it, the header (type/status, procedure name, serial, length) and a body
summary from :mod:`xdrstream.capture.decode` (arguments and results, error bodies, data
sizes, holes, V1 bodies). :func:`to_pcapng` wraps the trace into a synthetic TCP
connection (:func:`xdrstream.capture.pcap.write_pcapng`) that Wireshark opens with its
libvirt dissector (``tshark -d tcp.port==PORT,libvirt``).
"""

from __future__ import annotations

import json

from xdrstream.capture.decode import DecodedMessage, Decoder, StreamFailure
from xdrstream.capture.pcap import (
    Endpoint,
    FlowChunk,
    FlowDirection,
    SyntheticConnection,
    write_pcapng,
)
from xdrstream.conformance.trace import C2S, Trace
from xdrstream.protocol.framing import MessageStatus, MessageType

__all__ = ["decode_frames", "render", "to_pcapng"]

_WIDTH = 34
CLIENT_PORT = 40000


def decode_frames(trace: Trace) -> list[DecodedMessage | StreamFailure | None]:
    """One description per trace line (None for closes), decoded in wire order so that V1
    replies are read with the calls they answer."""
    described = Decoder.with_schemas().describe_frames(
        (_direction(frame.direction), frame.data) for frame in trace.frames if not frame.close
    )
    return [None if frame.close else next(described) for frame in trace.frames]


def _direction(side: str) -> FlowDirection:
    return FlowDirection.CLIENT_TO_SERVER if side == C2S else FlowDirection.SERVER_TO_CLIENT


def _summary(message: DecodedMessage) -> str:
    header = message.header
    name = message.procedure_name or f"proc {header.proc}"
    if message.program_name is None and header.prog != 0x6B656570:
        name = f"prog {header.prog:#x} {name}"
    kind = f"{MessageType(header.type).name}/{MessageStatus(header.status).name}"
    return f"{kind} {name} #{header.serial} ({message.length} B)"


def _body(message: DecodedMessage) -> str:
    if message.body_error:
        return f"! {message.body_error}"
    if message.body is None:
        return ""
    text = json.dumps(message.body, separators=(",", ":"))
    return text if len(text) <= 2 * _WIDTH + 8 else text[: 2 * _WIDTH + 5] + "..."


def render(trace: Trace) -> str:
    lines = [
        f"trace: {trace.description or '(no description)'}",
        f"programs: {', '.join(trace.programs)}  variant: {trace.variant or '-'}  "
        f"direction: {trace.direction or '-'}  cases: {', '.join(trace.cases) or '-'}",
        "",
        f"{'#':>4} {'time':>8}  {'client':<{_WIDTH}}          {'server':<{_WIDTH}}",
    ]
    for number, (frame, message) in enumerate(
        zip(trace.frames, decode_frames(trace), strict=True), 1
    ):
        when = "" if frame.time is None else f"{frame.time:8.4f}"
        if message is None:
            text = "closes its side (end of input)"
        elif isinstance(message, StreamFailure):
            text = f"{'partial frame' if frame.partial else 'bad frame'}, {len(frame.data)} B: "
            text += message.message
        else:
            text = _summary(message)
        if frame.direction == C2S:
            row = f"{text:<{_WIDTH}} ──────▶"
        else:
            row = f"{'':<{_WIDTH}} ◀────── {text}"
        lines.append(f"{number:>4} {when:>8}  {row}")
        extra = _body(message) if isinstance(message, DecodedMessage) else ""
        if frame.note:
            extra = f"{extra}  [{frame.note}]" if extra else f"[{frame.note}]"
        if extra:
            indent = 16 if frame.direction == C2S else 16 + _WIDTH + 9
            lines.append(" " * indent + extra)
    return "\n".join(lines) + "\n"


def to_pcapng(trace: Trace, port: int = 16509, start: float = 1_700_000_000.0) -> bytes:
    """The trace as one synthetic TCP connection 127.0.0.1:40000 -> 127.0.0.1:PORT."""
    chunks = []
    for frame in trace.frames:
        if frame.close:
            continue
        direction = _direction(frame.direction)
        when = None if frame.time is None else start + 0.01 + frame.time
        chunks.append(FlowChunk(direction, frame.data, when))
    connection = SyntheticConnection(
        Endpoint("127.0.0.1", CLIENT_PORT), Endpoint("127.0.0.1", port), chunks, start
    )
    return write_pcapng([connection])
