"""Bodies in and out of frames, with the engine's error reporting (spec.md §3, §4, §7).

The helpers every part of the engine (:mod:`.connection`, :mod:`.v1`) uses to turn a
received frame's payload into values, and values into a frame to send: a failure is a
:class:`RemoteProtocolError` naming the frame (received) or a :class:`LocalProtocolError`
(sent), never another exception.
"""

from __future__ import annotations

from typing import Any

from xdrstream.protocol import _bodies
from xdrstream.protocol.errors import LocalProtocolError, RemoteProtocolError
from xdrstream.protocol.events import Event, RemoteError, StreamData, StreamHole
from xdrstream.protocol.framing import HEADER_SIZE, Frame, Header, MessageStatus, MessageType
from xdrstream.protocol.framing import pack_header as pack_header

U32 = 0xFFFFFFFF

# Message types and statuses as module globals: the engine's hot paths compare with them.
CALL = MessageType.CALL
REPLY = MessageType.REPLY
MESSAGE = MessageType.MESSAGE
STREAM = MessageType.STREAM
HOLE = MessageType.STREAM_HOLE
OK = MessageStatus.OK
ERROR = MessageStatus.ERROR
CONTINUE = MessageStatus.CONTINUE

Buffers = list[bytes | bytearray | memoryview]


def event_name(event: Event) -> str:
    return type(event).__name__


def remote(frame: Frame, message: str, section: str) -> RemoteProtocolError:
    """The error for a received ``frame`` that breaks ``section``."""
    h = frame.header
    what = f"{MessageType(h.type).name}/{MessageStatus(h.status).name}"
    return RemoteProtocolError(
        f"{what} serial {h.serial} proc {h.proc}: {message}", section=section, offset=frame.offset
    )


def decode(frame: Frame, codec: Any, section: str) -> Any:
    """``frame``'s payload decoded with ``codec`` (None: a void body)."""
    payload = frame.payload
    if codec is None:
        if len(payload):
            raise remote(frame, f"{len(payload)} bytes for a void body", section)
        return None
    try:
        return codec.unpack(payload)
    except Exception as exc:  # the codec's DecodeError, or anything it lets through
        raise remote(frame, f"body does not decode: {exc}", section) from exc


def decode_error(frame: Frame, section: str) -> RemoteError:
    try:
        return _bodies.unpack_error(frame.payload)
    except RemoteProtocolError as exc:
        raise remote(frame, str(exc), section) from None


def encode(codec: Any, value: Any, what: str, section: str) -> bytes:
    """``value`` encoded with ``codec`` (None: void, ``value`` must be None)."""
    if codec is None:
        if value is not None:
            raise LocalProtocolError(f"{what} is void: pass None", section=section)
        return b""
    try:
        return bytes(codec.pack(value))
    except Exception as exc:  # the codec's EncodeError, or anything it lets through
        raise LocalProtocolError(f"{what} does not encode: {exc}", section=section) from exc


def error_payload(error: RemoteError) -> bytes:
    if not isinstance(error, RemoteError):
        raise LocalProtocolError("error must be a RemoteError", section="§4.5")
    problem = _bodies.check_error(error)
    if problem is not None:
        raise LocalProtocolError(f"error body: {problem}", section="§4.5")
    return _bodies.pack_error(error)


def check_words(prog: int, vers: int, proc: int, serial: int) -> None:
    for name, value, low, high in (
        ("program", prog, 0, U32),
        ("version", vers, 0, U32),
        ("procedure", proc, -(2**31), 2**31 - 1),
        ("serial", serial, 0, U32),
    ):
        if not isinstance(value, int) or not low <= value <= high:
            raise LocalProtocolError(f"{name} {value!r} out of range", section="§3.2")


def frame(header: Header, payload: bytes, max_frame: int) -> bytes:
    if len(payload) > max_frame - HEADER_SIZE:
        raise LocalProtocolError(
            f"payload of {len(payload)} bytes exceeds the frame limit", section="§3.3"
        )
    return pack_header(header, len(payload)) + payload


def check_hole(event: StreamHole, sparse: bool) -> None:
    if not sparse:
        raise LocalProtocolError(
            "holes need a @sparse procedure and a call that asks for them", section="§7.1.3"
        )
    if not isinstance(event.length, int) or not 0 <= event.length < 2**63:
        raise LocalProtocolError(f"hole length {event.length!r}", section="§7.1.3")
    if event.flags != 0:
        raise LocalProtocolError("hole flags must be 0", section="§7.1.3")


def check_data(event: StreamData, limit: int) -> int:
    """The size of ``event``'s data in bytes (a memoryview's ``nbytes``: its ``len`` counts
    items), which must be 1..``limit``."""
    data = event.data
    size = data.nbytes if type(data) is memoryview else len(data)
    if not 1 <= size <= limit:
        raise LocalProtocolError(
            f"stream data of {size} bytes: must be 1..{limit}", section="§7.1.2"
        )
    return size
