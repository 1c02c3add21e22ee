"""Seed inputs for the harnesses and the live fuzzer, built from valid encodings.

Sources (all optional but the first):

* :func:`canonical_sessions` -- one conversation per procedure of ``restore.x`` (and its
  error reply), driven through a real client/server :class:`Connection` pair: every stream
  variant and direction, holes, keepalives;
* :func:`capture_sessions` -- the real virsh <-> libvirtd captures in
  ``tests/fixtures/libvirt/*.pcapng``, cut into frames with :mod:`xdrstream.capture.pcap`
  and ordered by the packet that carried each frame;
* :func:`trace_sessions` -- the conformance traces under ``xdrstream/conformance/traces/``
  (valid and deliberately invalid sessions);
* for the decoder, the smallest value of every type (and, when hypothesis is installed,
  a few drawn values).

A session here is a list of ``(sender, frame)`` pairs in the order the frames travelled.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xdrstream.capture.pcap import FlowDirection, reassemble_capture
from xdrstream.fuzz import trace
from xdrstream.fuzz.harnesses import (
    REPO,
    decode_targets,
    new_connection,
    protocol_schemas,
    session_records,
)
from xdrstream.fuzz.mutators import split_frames
from xdrstream.fuzz.values import minimal_value, random_value
from xdrstream.protocol import NEED_DATA, Role
from xdrstream.protocol.events import (
    Call,
    ErrorReply,
    Event,
    KeepalivePing,
    KeepalivePong,
    RemoteError,
    Reply,
    StreamAck,
    StreamConfirm,
    StreamData,
    StreamEnd,
    StreamFinish,
    StreamHole,
    StreamRead,
)

__all__ = [
    "SessionFrames",
    "all_sessions",
    "canonical_sessions",
    "capture_sessions",
    "deliveries",
    "seed_inputs",
    "trace_sessions",
    "write_corpus",
]

SessionFrames = list[tuple[Role, bytes]]
CAPTURES = REPO / "tests" / "fixtures" / "libvirt"
TRACES = REPO / "xdrstream" / "conformance" / "traces"
MAX_SEED = 64 * 1024  # bytes per seed session: big seeds slow every execution down


class _Pair:
    """A client and a server joined back to back; every frame is delivered at once."""

    def __init__(self) -> None:
        self.client = new_connection(Role.CLIENT)
        self.server = new_connection(Role.SERVER)
        self.frames: SessionFrames = []

    def send(self, role: Role, event: Event) -> None:
        sender, receiver = (
            (self.client, self.server) if role is Role.CLIENT else (self.server, self.client)
        )
        data = sender.send(event)
        self.frames.append((role, data))
        receiver.receive_data(data)
        while (got := receiver.next_event()) is not NEED_DATA:
            if isinstance(got, StreamData):
                receiver.stream_consumed(got.serial, len(got.data))


def _restore_procs() -> dict[int, tuple[str, str | None, str | None]]:
    restore = protocol_schemas()[0]
    procs = restore.programs["XS_RESTORE_PROGRAM"].versions[1].procedures
    return {n: (p.name, p.arg_type, p.result_type) for n, p in procs.items()}


def canonical_sessions() -> list[SessionFrames]:
    """A happy path per restore.x procedure, plus an error reply and keepalives."""
    restore = protocol_schemas()[0]
    program = int(restore.constants["XS_RESTORE_PROGRAM"])
    out: list[SessionFrames] = []
    error = RemoteError(code=38, domain=18, message="no space left on device")
    for number, (_name, arg_type, result_type) in sorted(_restore_procs().items()):
        args = minimal_value(restore, restore.xtype(arg_type)) if arg_type else None
        result = minimal_value(restore, restore.xtype(result_type)) if result_type else None
        pair = _Pair()
        serial = pair.client.next_serial()
        pair.send(Role.CLIENT, Call(serial, program, 1, number, args))
        info = pair.server.stream_info(serial)
        kind = info.kind if info is not None else "call"
        _stream_script(pair, serial, kind, result)
        out.append(pair.frames)
        # The same call failing.
        failing = _Pair()
        serial = failing.client.next_serial()
        failing.send(Role.CLIENT, Call(serial, program, 1, number, args))
        failing.send(Role.SERVER, ErrorReply(serial, error))
        out.append(failing.frames)
    keep = _Pair()
    keep.send(Role.CLIENT, KeepalivePing())
    keep.send(Role.SERVER, KeepalivePong())
    out.append(keep.frames)
    return out


def _stream_script(pair: _Pair, serial: int, kind: str, result: object) -> None:
    c, s = Role.CLIENT, Role.SERVER
    data = StreamData(serial, b"seed data")
    hole = StreamHole(serial, 65536)
    if kind == "call":
        pair.send(s, Reply(serial, result))
    elif kind == "v1 upload":
        pair.send(s, Reply(serial, result))
        for event in (data, hole):
            pair.send(c, event)
            pair.send(s, StreamAck(serial))
        pair.send(c, StreamFinish(serial))
        pair.send(s, StreamConfirm(serial))
    elif kind == "v1 download":
        pair.send(s, Reply(serial, result))
        for answer in (data, hole, StreamEnd(serial)):
            pair.send(c, StreamRead(serial, 4096))
            pair.send(s, answer)
        pair.send(c, StreamFinish(serial))
        pair.send(s, StreamConfirm(serial))
    elif kind == "v2 upload":
        pair.send(s, Reply(serial, result))
        pair.send(c, data)
        if pair.server.stream_info(serial).sparse:  # type: ignore[union-attr]
            pair.send(c, hole)
        pair.send(c, StreamFinish(serial))
        pair.send(s, StreamConfirm(serial))
    elif kind == "v2 download":
        pair.send(s, Reply(serial, result))
        pair.send(s, data)
        if pair.server.stream_info(serial).sparse:  # type: ignore[union-attr]
            pair.send(s, hole)
        pair.send(s, StreamEnd(serial))
        pair.send(c, StreamFinish(serial))
        pair.send(s, StreamConfirm(serial))
    elif kind == "v3 upload":
        pair.send(c, data)
        pair.send(c, hole)
        pair.send(c, StreamFinish(serial))
        pair.send(s, Reply(serial, result))
    elif kind == "v3 download":
        pair.send(s, data)
        pair.send(s, hole)
        pair.send(s, StreamEnd(serial))
        pair.send(s, Reply(serial, result))


def _shrink(frame: bytes, limit: int) -> bytes:
    """A STREAM data frame cut to ``limit`` payload bytes (chunk boundaries carry no
    meaning, spec.md §7.1.2), so that seeds stay small and fast; other frames unchanged."""
    if len(frame) - 28 <= limit or frame[16:20] != b"\0\0\0\x03" or frame[24:28] != b"\0\0\0\x02":
        return frame
    return struct.pack(">I", 28 + limit) + frame[4:28] + frame[28 : 28 + limit]


def capture_sessions(directory: Path = CAPTURES, chunk_limit: int = 1024) -> list[SessionFrames]:
    """Frames of every TCP connection in the committed libvirt captures (stream data
    frames cut to ``chunk_limit`` bytes)."""
    out: list[SessionFrames] = []
    for path in sorted(directory.glob("*.pcapng")):
        for flow in reassemble_capture(path.read_bytes()).flows:
            timed: list[tuple[int, int, Role, bytes]] = []
            for direction, role in (
                (FlowDirection.CLIENT_TO_SERVER, Role.CLIENT),
                (FlowDirection.SERVER_TO_CLIENT, Role.SERVER),
            ):
                stream = flow.stream(direction)
                frames, _rest = split_frames(stream.data)
                offset = 0
                for frame in frames:
                    packet = stream.packet_at(offset) or 0
                    timed.append(
                        (packet, int(role is Role.SERVER), role, _shrink(frame, chunk_limit))
                    )
                    offset += len(frame)
            if timed:
                timed.sort(key=lambda item: (item[0], item[1]))
                out.append([(role, frame) for _p, _d, role, frame in timed])
    return out


def trace_sessions(directory: Path = TRACES, chunk_limit: int = 1024) -> list[SessionFrames]:
    """The committed conformance traces (:mod:`xdrstream.fuzz.trace`), stream data frames
    cut to ``chunk_limit`` bytes."""
    out = []
    for path in sorted(directory.glob("*.jsonl")):
        session = [(role, _shrink(frame, chunk_limit)) for role, frame in trace.load(path)]
        if sum(len(frame) for _role, frame in session) <= MAX_SEED:
            out.append(session)  # (big V1 chunks cannot be cut: such traces are left out)
    return out


def all_sessions() -> list[SessionFrames]:
    return canonical_sessions() + capture_sessions() + trace_sessions()


def _wire(session: SessionFrames, sender: Role) -> bytes:
    return b"".join(frame for role, frame in session if role is sender)


def _decode_seeds() -> Iterator[bytes]:
    for index, target in enumerate(decode_targets()):
        prefix = struct.pack(">H", index)
        value = minimal_value(target.schema, target.schema.xtype(target.name))
        yield prefix + target.schema.codec(target.name).pack(value)
        yield from _drawn(prefix, target.schema, target.name)


def _drawn(prefix: bytes, schema: Any, name: str) -> Iterator[bytes]:
    """A few random valid values (deterministic: seeded by the type's name)."""
    codec = schema.codec(name)
    rng = random.Random(name)
    for _ in range(3):
        yield prefix + codec.pack(random_value(schema, schema.xtype(name), rng))


def seed_inputs(harness: str) -> list[bytes]:
    """The seed corpus of harness ``"decode"``, ``"frames"`` or ``"session"``."""
    if harness == "decode":
        return list(_decode_seeds())
    sessions = all_sessions()
    if harness == "frames":
        out = []
        for session in sessions:
            wire = _wire(session, Role.CLIENT)
            if wire:
                out += [b"\xff" + wire, b"\x06" + wire]  # 256-byte and 7-byte reads
        return out
    if harness == "session":
        return [session_records(deliveries(session)) for session in sessions]
    raise ValueError(f"unknown harness {harness!r}")


def deliveries(session: SessionFrames) -> list[tuple[Role, bytes]]:
    """``(receiver, frame)`` pairs of a session (input of ``session_records``)."""
    return [(Role.SERVER if s is Role.CLIENT else Role.CLIENT, f) for s, f in session]


def write_corpus(harness: str, directory: Path) -> int:
    """Write the seeds of ``harness`` into ``directory`` (file name = SHA-1, like libFuzzer).
    Returns the number of files."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds = seed_inputs(harness)
    for data in seeds:
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return len(seeds)
