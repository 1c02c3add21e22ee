"""Seeds for fuzzing one procedure of libvirt's remote program with schema-aware values
(``xdrstream fuzz --target ADDR --procedure NAME [--libvirt-schemas DIR]``).

Each seed is the client side of a session as libvirt clients open one -- AUTH_LIST,
CONNECT_OPEN with the driver URI -- followed by calls of the procedure with arguments
generated from its ``.x`` type (:func:`xdrstream.fuzz.values.random_value`: every field
valid on its own, bounds respected), so the live fuzzer's mutations start from bodies the
daemon decodes and reach its handler.  A procedure with a data stream gets, after its
call, what a client sends on it (a data chunk and the finish of an upload; the finish of
a download).

The live fuzzer judges the daemon's answers with a client engine that must know each
procedure's result and stream (:func:`xdrstream.fuzz.live.judge`); :func:`judge_registry`
gives it the loaded remote program -- every procedure of libvirt's ``.x`` files, not only
the built-in subset -- beside restore.x and keepalive.  ``xdrstream fuzz --procedure``
installs it (:func:`xdrstream.fuzz.live.use_registry`), with the remote program loaded
lenient, as libvirt's own client decodes.
"""

from __future__ import annotations

import random

from xdrstream.fuzz.values import random_value
from xdrstream.libvirt.protocol import RemoteProtocol
from xdrstream.protocol import Registry, programs_from_schema, schemas
from xdrstream.protocol.framing import Header, MessageStatus, MessageType, pack_frame
from xdrstream.protocol.programs import Direction

DEFAULT_URI = "test:///default"


def procedure_seeds(
    remote: RemoteProtocol,
    procedure: str | int,
    *,
    uri: str | None = DEFAULT_URI,
    count: int = 16,
    calls: int = 3,
    seed: int = 0,
) -> list[list[bytes]]:
    """``count`` client sessions, each opening the connection (to ``uri``; None: the
    daemon's default) and calling ``procedure`` ``calls`` times with generated arguments."""
    proc = remote.procedure(procedure)
    schema = remote.schema
    rng = random.Random(seed)
    arg_type = schema.xtype(proc.arg_type) if proc.arg_type else None
    codec = remote.codec(proc.arg_type)
    sessions: list[list[bytes]] = []
    for _ in range(count):
        frames = [
            _call(remote, "AUTH_LIST", 1, b""),
            _call(remote, "CONNECT_OPEN", 2, _pack(remote, "CONNECT_OPEN", name=uri, flags=0)),
        ]
        for index in range(calls):
            serial = 3 + index
            body = (
                b"" if arg_type is None else bytes(codec.pack(random_value(schema, arg_type, rng)))
            )
            frames.append(_call(remote, proc.number, serial, body))
            if proc.stream is not None:
                frames += _stream_tail(remote, proc.number, serial, proc.stream.direction, rng)
        sessions.append(frames)
    return sessions


def judge_registry(remote: RemoteProtocol) -> Registry:
    """The programs the live fuzzer's judge decodes answers with: ``remote`` (as loaded:
    its procedures, results and streams) and restore.x."""
    restore = programs_from_schema(schemas.load("restore"))
    return Registry([remote.program_definition(), *restore])


def _pack(remote: RemoteProtocol, procedure: str, **fields: object) -> bytes:
    codec = remote.codec(remote.procedure(procedure).arg_type)
    return bytes(codec.pack(remote.args(procedure, **fields)))


def _call(remote: RemoteProtocol, procedure: str | int, serial: int, body: bytes) -> bytes:
    number = remote.number(procedure)
    header = Header(remote.program, remote.version, number, MessageType.CALL, serial, 0)
    return bytes(pack_frame(header, body))


def _stream_tail(
    remote: RemoteProtocol, number: int, serial: int, direction: Direction, rng: random.Random
) -> list[bytes]:
    def frame(status: MessageStatus, body: bytes = b"") -> bytes:
        header = Header(remote.program, remote.version, number, MessageType.STREAM, serial, status)
        return bytes(pack_frame(header, body))

    if direction is Direction.UPLOAD:
        return [
            frame(MessageStatus.CONTINUE, rng.randbytes(rng.choice([1, 512, 4096]))),
            frame(MessageStatus.OK),
        ]
    return [frame(MessageStatus.OK)]
