"""The "one input" functions of the fuzz harnesses (atheris entry points in ``fuzz/``).

Each function takes arbitrary bytes and either returns or raises one of the documented
errors, which it handles itself: :class:`~xdrstream.codec.DecodeError` from a decoder,
:class:`~xdrstream.protocol.ProtocolError` from the engine (spec.md §10). Anything else
escaping is a bug (atheris reports it as a crash); so is a violated invariant, raised as
:class:`InvariantError`:

* :func:`decode_one` -- the first two bytes choose one type of every shipped schema, the
  rest is decoded; an accepted value re-encodes to the same bytes (XDR is canonical).
* :func:`frames_one` -- the input, cut into reads, goes through a :class:`FrameDecoder`
  and a server :class:`Connection` that answers what it can (so streams open and later
  states are reached); buffers stay within their limits.
* :func:`session_one` -- the input is a list of records ``[h][n bytes]`` (``h & 1``: 0 to
  the server, 1 to the client; ``n = (h >> 1) + 1``) fed to a client and a server. Each
  event one side receives is mirrored as a send on the other side, so both engines follow
  the same conversation (see :func:`session_records` to turn a session into such input).

:func:`check_memory` runs a harness under ``tracemalloc`` and checks the peak against a
bound linear in the input size: memory may not grow with what a peer merely announces.
"""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from xdrstream.codec import DecodeError, Schema, load_schema
from xdrstream.codec import model as m
from xdrstream.fuzz.values import minimal_value
from xdrstream.protocol import (
    NEED_DATA,
    Connection,
    Limits,
    LocalProtocolError,
    ProtocolError,
    Registry,
    Role,
    programs_from_schema,
    schemas,
)
from xdrstream.protocol.events import (
    Call,
    ConnectionClosed,
    ErrorReply,
    Event,
    ExchangeEvent,
    KeepalivePing,
    KeepalivePong,
    Message,
    RemoteError,
    Reply,
    StreamAbort,
    StreamAck,
    StreamConfirm,
    StreamData,
    StreamEnd,
    StreamFinish,
    StreamHole,
    StreamRead,
)
from xdrstream.protocol.framing import LEN_SIZE, FrameDecoder

__all__ = [
    "HARNESSES",
    "LIMITS",
    "InvariantError",
    "check_memory",
    "decode_one",
    "decode_targets",
    "frames_one",
    "prepare",
    "schema_files",
    "session_one",
    "session_records",
]

REPO = Path(__file__).resolve().parents[2]
#: Small limits keep each input cheap; the invariants are the same as with the defaults.
LIMITS = Limits(
    max_frame=1 << 20, max_receive_buffer=(1 << 20) + LEN_SIZE + (1 << 16), stream_buffer=1 << 20
)
ERROR = RemoteError(code=1, domain=0, message="fuzz")


class InvariantError(AssertionError):
    """A harness invariant does not hold (a finding, like an unexpected exception)."""


def schema_files() -> list[Path]:
    """Every shipped ``.x`` file: the protocol's, plus the codec tests' when present."""
    files = sorted(Path(str(schemas.path("message"))).parent.glob("*.x"))
    tests = REPO / "tests" / "codec" / "schemas"
    if tests.is_dir():
        files += sorted(tests.glob("*.x"))
    return files


@dataclass(frozen=True)
class DecodeTarget:
    schema: Schema
    name: str
    canonical: bool  # no float inside: the encoding of a value is unique


def _has_float(t: m.XType) -> bool:
    seen: set[int] = set()
    stack = [t]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, m.Prim) and x.kind in ("float", "double"):
            return True
        stack.extend(m.children(x))
    return False


@cache
def decode_targets() -> tuple[DecodeTarget, ...]:
    """Every type of every shipped schema, in a fixed order (file, then type name)."""
    out = []
    for path in schema_files():
        schema = load_schema(path)
        for name in sorted(schema.model.types):
            out.append(DecodeTarget(schema, name, not _has_float(schema.xtype(name))))
    return tuple(out)


def decode_one(data: bytes) -> None:
    targets = decode_targets()
    if len(data) < 2:
        return
    target = targets[struct.unpack_from(">H", data)[0] % len(targets)]
    body = data[2:]
    codec = target.schema.codec(target.name)
    try:
        value = codec.unpack(body)
    except DecodeError as exc:
        if exc.offset is None or not 0 <= exc.offset <= len(body):
            raise InvariantError(f"{target.name}: error offset {exc.offset} outside input") from exc
        return
    again = codec.pack(value)
    if target.canonical and again != body:
        raise InvariantError(f"{target.name}: accepted {body.hex()} re-encodes as {again.hex()}")
    if codec.pack(codec.unpack(body, zero_copy=True)) != again:
        raise InvariantError(f"{target.name}: zero-copy decoding differs")


# -- protocol harnesses ----------------------------------------------------------------------


@cache
def protocol_schemas() -> tuple[Schema, ...]:
    return (schemas.load("restore"), load_schema(schemas.path("libvirt_remote")))


@cache
def _registry() -> Registry:
    return Registry(p for s in protocol_schemas() for p in programs_from_schema(s))


@cache
def _results() -> dict[tuple[int, int, int], Any]:
    """(prog, vers, proc) -> a valid result value (smallest encoding) for replies."""
    out: dict[tuple[int, int, int], Any] = {}
    for schema in protocol_schemas():
        for prog in schema.programs.values():
            for vnum, vers in prog.versions.items():
                for pnum, proc in vers.procedures.items():
                    value = None
                    if proc.result_type is not None:
                        value = minimal_value(schema, schema.xtype(proc.result_type))
                    out[(prog.number, vnum, pnum)] = value
    return out


def new_connection(role: Role) -> Connection:
    return Connection(role, _registry(), LIMITS)


def _try_send(conn: Connection, event: Event) -> bytes:
    try:
        return conn.send(event)
    except LocalProtocolError:
        return b""  # not allowed in this state: the responder just tries the next answer


def _check_bounds(conn: Connection) -> None:
    if conn.buffered > LIMITS.max_receive_buffer:
        raise InvariantError(f"{conn.buffered} bytes buffered, limit {LIMITS.max_receive_buffer}")


def answer(conn: Connection, event: Event, calls: dict[int, Call]) -> bytes:
    """What a simple server sends after receiving ``event`` (exercises the send paths and
    opens streams so that later frames reach deeper states)."""
    out = []
    if isinstance(event, Call):
        calls[event.serial] = event
        key = (event.program, event.version, event.procedure)
        if not event.known or event.serial % 7 == 6:
            return _try_send(conn, ErrorReply(event.serial, ERROR))
        info = conn.stream_info(event.serial)
        if info is not None and info.kind.startswith("v3"):
            if info.kind.endswith("download"):
                out.append(_try_send(conn, StreamData(event.serial, b"fuzz")))
                out.append(_try_send(conn, StreamEnd(event.serial)))
                out.append(_try_send(conn, Reply(event.serial, _results().get(key))))
            return b"".join(out)
        out.append(_try_send(conn, Reply(event.serial, _results().get(key))))
        if info is not None and info.kind.endswith("download") and "v1" not in info.kind:
            out.append(_try_send(conn, StreamData(event.serial, b"fuzz")))
            out.append(_try_send(conn, StreamEnd(event.serial)))
        return b"".join(out)
    if not isinstance(event, ExchangeEvent):
        if isinstance(event, KeepalivePing):
            return _try_send(conn, KeepalivePong())
        return b""
    serial = event.serial
    if isinstance(event, (StreamData, StreamHole)):
        if isinstance(event, StreamData):
            conn.stream_consumed(serial, len(event.data))
        return _try_send(conn, StreamAck(serial))
    if isinstance(event, StreamRead):
        if serial % 2:
            return _try_send(conn, StreamEnd(serial))
        return _try_send(conn, StreamData(serial, b"x" * min(event.max_bytes, 3)))
    if isinstance(event, (StreamFinish, StreamAbort)):
        call = calls.get(serial)
        key = (call.program, call.version, call.procedure) if call else (0, 0, 0)
        return _try_send(conn, StreamConfirm(serial)) or _try_send(
            conn, Reply(serial, _results().get(key))
        )
    return b""


def _answered(conn: Connection, event: Event, calls: dict[int, Call]) -> None:
    answer(conn, event, calls)


def _drain(conn: Connection, on_event: Callable[[Event], None]) -> None:
    while True:
        event = conn.next_event()
        if event is NEED_DATA or isinstance(event, ConnectionClosed):
            return  # (after end of input ConnectionClosed repeats)
        on_event(event)


def _reads(data: bytes, size: int) -> Iterable[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def frames_one(data: bytes) -> None:
    if not data:
        return
    read_size = data[0] + 1
    body = data[1:]
    decoder = FrameDecoder(LIMITS.max_frame)
    try:
        for chunk in _reads(body, read_size):
            decoder.feed(chunk)
            while decoder.next_frame() is not None:
                pass
            if decoder.buffered > LIMITS.max_frame + LEN_SIZE + read_size:
                raise InvariantError(f"frame decoder holds {decoder.buffered} bytes")
    except ProtocolError:
        pass
    server = new_connection(Role.SERVER)
    calls: dict[int, Call] = {}
    try:
        for chunk in _reads(body, read_size):
            server.receive_data(chunk)
            _check_bounds(server)
            _drain(server, lambda event: _answered(server, event, calls))
        server.receive_data(b"")
        _drain(server, lambda event: None)
    except ProtocolError:
        return


def _mirror(conn: Connection, event: Event) -> None:
    """Make ``conn`` send what its peer just received, so both follow one conversation."""
    if isinstance(event, Call):
        if not event.known:
            return
        for _ in range(64):  # keep the client's serial counter with the peer's calls
            if conn.next_serial() >= event.serial:
                break
        event = Call(event.serial, event.program, event.version, event.procedure, event.args)
    elif isinstance(event, Message) and isinstance(event.body, memoryview):
        event = Message(event.program, event.version, event.procedure, bytes(event.body))
    _try_send(conn, event)


def session_one(data: bytes, strict: bool = False) -> None:
    """``strict``: let ProtocolErrors out too (for inputs known to be valid: seeds)."""
    client = new_connection(Role.CLIENT)
    server = new_connection(Role.SERVER)
    pos = 0
    try:
        while pos < len(data):
            head = data[pos]
            n = (head >> 1) + 1
            chunk = data[pos + 1 : pos + 1 + n]
            pos += 1 + n
            if not chunk:
                break
            receiver, sender = (server, client) if head & 1 == 0 else (client, server)
            receiver.receive_data(chunk)
            _check_bounds(receiver)

            def on_event(event: Event, receiver: Connection = receiver, peer: Any = sender) -> None:
                if isinstance(event, StreamData):
                    receiver.stream_consumed(event.serial, len(event.data))
                _mirror(peer, event)

            _drain(receiver, on_event)
        for conn in (server, client):
            conn.receive_data(b"")
            _drain(conn, lambda event: None)
    except ProtocolError:
        if strict:
            raise
        return


def session_records(deliveries: Iterable[tuple[Role, bytes]]) -> bytes:
    """Input for :func:`session_one`: ``(receiver, frame)`` pairs in delivery order (e.g.
    the ``deliver`` steps of a :class:`~xdrstream.fuzz.strategies.Session`)."""
    out = bytearray()
    for receiver, frame in deliveries:
        direction = 0 if receiver is Role.SERVER else 1
        for i in range(0, len(frame), 128):
            piece = frame[i : i + 128]
            out.append(((len(piece) - 1) << 1) | direction)
            out += piece
    return bytes(out)


def prepare() -> None:
    """Load every schema and table now (not during the first input)."""
    decode_targets()
    _registry()
    _results()


#: name -> one-input function (the atheris entry points use the same names).
HARNESSES: dict[str, Callable[[bytes], None]] = {
    "decode": decode_one,
    "frames": frames_one,
    "session": session_one,
}


def check_memory(
    harness: Callable[[bytes], None], data: bytes, factor: int = 16, slack: int = 4 << 20
) -> int:
    """Run ``harness(data)`` under tracemalloc; the peak must stay below
    ``factor * len(data) + slack`` bytes. Returns the peak."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        harness(data)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if started:
            tracemalloc.stop()
    if peak > factor * len(data) + slack:
        raise InvariantError(f"memory peak {peak} bytes for {len(data)} bytes of input")
    return peak
