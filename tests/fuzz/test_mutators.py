"""xdrstream.fuzz.mutators: structure found inside frames, each mutation kind changes what
it names, determinism, and session-level mutations."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings

from xdrstream.codec import compile_schema, load_schema
from xdrstream.fuzz.mutators import (
    FRAME_MUTATIONS,
    SESSION_MUTATIONS,
    Mutator,
    chunks,
    split_frames,
)
from xdrstream.fuzz.strategies import sessions
from xdrstream.protocol import Role, bodies, schemas
from xdrstream.protocol.events import RemoteError
from xdrstream.protocol.framing import Header, MessageStatus, MessageType, pack_frame

RESTORE = schemas.load("restore")
LIBVIRT = load_schema(schemas.path("libvirt_remote"))
MUTATOR = Mutator([RESTORE, LIBVIRT])
PROG = 0x58445253


def call(proc: int, payload: bytes, mtype: int = 0, status: int = 0, serial: int = 1) -> bytes:
    return pack_frame(Header(PROG, 1, proc, mtype, serial, status), payload)


ECHO = call(2, RESTORE["xs_echo_args"].pack(RESTORE["xs_echo_args"](data=b"abcde")))
RESTORE_CALL = call(
    6, RESTORE["xs_restore_args"].pack(RESTORE["xs_restore_args"](name="ab", size_hint=9, flags=0))
)
ERROR_REPLY = call(
    2,
    bodies.pack_error(RemoteError(code=1, message="m", dom=("d", bytes(16), 3))),
    mtype=MessageType.REPLY,
    status=MessageStatus.ERROR,
)


def test_layout_of_a_call_names_header_length_prefix_and_padding() -> None:
    spots = MUTATOR.layout(ECHO)
    assert spots[0].kind == "length" and spots[0].offset == 0
    assert [s.kind for s in spots[1:7]] == [
        f"header.{w}" for w in ("prog", "vers", "proc", "type", "serial", "status")
    ]
    body = spots[7:]
    assert [(s.kind, s.offset) for s in body] == [
        ("length", 28),
        ("padding", 37),
        ("padding", 38),
        ("padding", 39),
    ]
    assert body[0].limit == 65536 and body[0].remaining == 8


def test_layout_of_an_error_body_finds_optional_flags() -> None:
    kinds = [s.kind for s in MUTATOR.layout(ERROR_REPLY)[7:]]
    # message flag+len+pad, dom flag + name len + pad, str1..3 flags, net flag
    assert kinds.count("flag") == 6
    assert kinds.count("length") == 2


def test_layout_of_a_v1_call_finds_the_union_discriminant() -> None:
    frame = call(4, bodies.pack_v1_call(1, bodies.V1Op.READ, 4096), status=2, serial=3)
    spots = MUTATOR.layout(frame)[7:]
    assert [(s.kind, s.offset) for s in spots] == [("discriminant", 32)]
    assert spots[0].values == (0, 1, 2, 3, 4)


def test_a_body_that_fits_no_type_has_header_spots_only() -> None:
    assert len(MUTATOR.layout(call(2, b"\x00\x00\x00\x09"))) == 7
    assert len(MUTATOR.layout(b"\x00\x00")) == 1


@pytest.mark.parametrize("kind", FRAME_MUTATIONS)
def test_each_frame_mutation_changes_the_spot_it_names(kind: str) -> None:
    frame = (
        RESTORE_CALL
        if kind != "discriminant"
        else call(4, bodies.pack_v1_call(1, bodies.V1Op.READ, 4096), status=2)
    )
    if kind == "flag":
        frame = ERROR_REPLY
    changed = 0
    for seed in range(40):
        out = MUTATOR.mutate_frame(frame, random.Random(seed), kind)
        if out == frame:
            continue
        changed += 1
        if kind in ("header", "length", "bound", "discriminant", "flag", "padding"):
            assert len(out) == len(frame)
            diff = [i for i in range(len(frame)) if out[i] != frame[i]]
            if kind == "length":
                assert max(diff) < 4
            elif kind == "header":
                assert min(diff) >= 4 and max(diff) < 28
            elif kind == "padding":
                assert len(diff) == 1 and frame[diff[0]] == 0
            else:
                assert min(diff) >= 28
    assert changed >= 30 or kind == "enum"  # (restore.x has no enum: "bytes" is used)


ENUMS = compile_schema(
    """
    enum col { RED = 1, GREEN = 2 };
    struct pick { col c; bool b; int x; };
    program P { version V { void F(pick) = 1; } = 1; } = 0x1234;
    """,
    "enums.x",
)


def test_enum_and_bool_words_are_found_and_mutated() -> None:
    pick = ENUMS["pick"]
    frame = pack_frame(Header(0x1234, 1, 1, 0, 0, 0), pick.pack(pick(c=2, b=True, x=5)))
    mutator = Mutator([ENUMS])
    spots = mutator.layout(frame)[7:]
    assert [(s.kind, s.offset, s.values) for s in spots] == [
        ("enum", 28, (1, 2)),
        ("flag", 32, ()),
    ]
    values = set()
    for seed in range(30):
        out = mutator.mutate_frame(frame, random.Random(seed), "enum")
        assert out[:28] == frame[:28] and out[32:] == frame[32:]
        values.add(struct.unpack_from(">I", out, 28)[0])
    assert {1, 3} <= values  # another member and a non-member


def test_mutations_are_deterministic() -> None:
    frames = [ECHO, RESTORE_CALL, ERROR_REPLY]
    for seed in range(20):
        a = MUTATOR.mutate_session(frames, random.Random(seed))
        b = MUTATOR.mutate_session(frames, random.Random(seed))
        assert a == b
        assert MUTATOR.mutate_stream(b"".join(frames), random.Random(seed), 3) == (
            MUTATOR.mutate_stream(b"".join(frames), random.Random(seed), 3)
        )


def test_session_mutations() -> None:
    frames = [ECHO, RESTORE_CALL, ERROR_REPLY]
    rng = random.Random(5)
    assert sorted(MUTATOR.mutate_session(frames, rng, "reorder")) == sorted(frames)
    dup = MUTATOR.mutate_session(frames, rng, "duplicate")
    assert len(dup) == 4 and set(dup) == set(frames)
    assert len(MUTATOR.mutate_session(frames, rng, "drop")) == 2
    (cut,) = MUTATOR.mutate_session(frames, rng, "truncate")
    assert b"".join(frames).startswith(cut) and len(cut) < sum(map(len, frames))
    split = MUTATOR.mutate_session([RESTORE_CALL], rng, "split")
    assert len(split) == 2
    for part in split:
        assert struct.unpack(">I", part[:4])[0] == len(part)
        assert part[4:28] == RESTORE_CALL[4:28]
    assert b"".join(p[28:] for p in split) == RESTORE_CALL[28:]
    assert set(SESSION_MUTATIONS) == {"frame", "reorder", "duplicate", "drop", "truncate", "split"}
    assert MUTATOR.mutate_session([], rng)  # an empty session still gives some input


def test_split_frames_and_chunks() -> None:
    data = ECHO + RESTORE_CALL + b"\x00\x00"
    frames, rest = split_frames(data)
    assert frames == [ECHO, RESTORE_CALL] and rest == b"\x00\x00"
    pieces = chunks(data, random.Random(1), max_chunk=5)
    assert b"".join(pieces) == data and all(1 <= len(p) <= 5 for p in pieces)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(sessions(RESTORE, max_steps=25))
def test_every_generated_frame_has_a_complete_body_layout(session: object) -> None:
    # Bodies of valid frames always decode along their type: the layout covers the body
    # whenever it is not raw stream data (STREAM/CONTINUE) or empty.
    for role in (Role.CLIENT, Role.SERVER):
        for frame in session.sent(role):  # type: ignore[attr-defined]
            mtype = struct.unpack_from(">i", frame, 16)[0]
            if mtype == MessageType.STREAM or len(frame) == 28:
                continue
            assert list(MUTATOR.body_types(frame)), frame.hex()
