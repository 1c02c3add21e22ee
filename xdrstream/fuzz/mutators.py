"""Structure-aware mutators of frames and sessions (deterministic given a ``random.Random``).

A :class:`Mutator` knows the schemas of the programs on the wire, so it can find the
structure inside a frame (:meth:`Mutator.layout`): the length word, the six header words,
and in the body every length prefix of a string, opaque or array, every union
discriminant, enum value, optional/bool flag and padding byte, by walking the codec's type
model over the body (the body's type follows from the header: procedure arguments or
result, error body, stream hole, V1 stream call or chunk, spec.md §4, §7). It then changes
exactly one such spot to a value chosen to hit a bound or an edge:

=================  =============================================================
mutation           what changes
=================  =============================================================
``header``         program, version, procedure, type, serial or status word
``length``         the frame's length word (below 28, off by one, beyond limits)
``bound``          a length prefix inside the body: at, above or far above its bound
``discriminant``   a union discriminant: another arm's label or one with no arm
``enum``           an enum value: another member or a non-member
``flag``           an optional/bool word: the other value or 2
``padding``        a padding byte made non-zero
``bytes``          generic: flip a bit, overwrite, insert or delete bytes (length word
                   fixed up or not)
=================  =============================================================

and for sessions (lists of frames): ``reorder``, ``duplicate``, ``drop``, ``truncate``
(cut the byte stream), ``split`` (cut one frame into two framed pieces), and any frame
mutation applied to one frame. :func:`chunks` splits a byte stream into reads.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from xdrstream.codec import DecodeError, Schema
from xdrstream.codec import model as m
from xdrstream.protocol import schemas as protocol_schemas
from xdrstream.protocol.framing import HEADER_SIZE, LEN_SIZE, MAX_FRAME, MIN_FRAME

__all__ = ["FRAME_MUTATIONS", "SESSION_MUTATIONS", "Mutator", "Spot", "chunks", "split_frames"]

_U32 = struct.Struct(">I")
_HEADER = struct.Struct(">IIIiiIi")
_U32_MAX = 0xFFFFFFFF
HEADER_WORDS = ("prog", "vers", "proc", "type", "serial", "status")

FRAME_MUTATIONS = (
    "header",
    "length",
    "bound",
    "discriminant",
    "enum",
    "flag",
    "padding",
    "bytes",
)
SESSION_MUTATIONS = ("frame", "reorder", "duplicate", "drop", "truncate", "split")


@dataclass(frozen=True)
class Spot:
    """A mutable place in a frame. ``offset`` is from the frame's first byte.

    ``kind``: ``length`` (``limit`` = the bound), ``discriminant`` (``values`` = the arm
    labels; ``limit`` = 1 if there is a default arm), ``enum`` (``values`` = members),
    ``flag`` (optional/bool word), ``padding`` (one byte).
    """

    kind: str
    offset: int
    limit: int = 0
    values: tuple[int, ...] = ()
    remaining: int = 0  # for lengths: bytes after the prefix up to the end of the frame


class _Walker:
    """Records the spots of a body while decoding it along the type model."""

    def __init__(self, data: bytes, base: int, max_depth: int = 64) -> None:
        self.data = data
        self.base = base  # offset of the body in the frame
        self.spots: list[Spot] = []
        self.max_depth = max_depth

    def word(self, off: int) -> int:
        if off + 4 > len(self.data):
            raise DecodeError("truncated", "", off)
        return int(_U32.unpack_from(self.data, off)[0])

    def walk(self, t: m.XType, off: int, depth: int = 0) -> int:
        if depth > self.max_depth:
            raise DecodeError("too deep", "", off)
        if isinstance(t, m.Prim):
            return off + t.size
        if isinstance(t, m.Bool):
            self.spots.append(Spot("flag", self.base + off))
            return off + 4
        if isinstance(t, m.Enum):
            values = tuple(sorted(set(t.members.values())))
            self.spots.append(Spot("enum", self.base + off, values=values))
            return off + 4
        if isinstance(t, (m.String, m.Opaque)):
            if isinstance(t, m.Opaque) and t.fixed:
                n, start = t.size, off
            else:
                n = self.word(off)
                start = off + 4
                left = len(self.data) - start
                self.spots.append(Spot("length", self.base + off, t.size, remaining=left))
            end = start + n
            padded = end + (-n & 3)
            if padded > len(self.data):
                raise DecodeError("truncated", "", off)
            self.spots.extend(Spot("padding", self.base + i) for i in range(end, padded))
            return padded
        if isinstance(t, m.Optional):
            flag = self.word(off)
            self.spots.append(Spot("flag", self.base + off))
            return self.walk(t.element, off + 4, depth + 1) if flag == 1 else off + 4
        if isinstance(t, m.Array):
            if t.fixed:
                n = t.size
            else:
                n = self.word(off)
                left = len(self.data) - off - 4
                self.spots.append(Spot("length", self.base + off, t.size, remaining=left))
                off += 4
            if n > len(self.data):  # every element takes at least... a guard, not exact
                raise DecodeError("implausible count", "", off)
            for _ in range(n):
                off = self.walk(t.element, off, depth + 1)
            return off
        if isinstance(t, m.Struct):
            for f in t.fields:
                off = self.walk(f.type, off, depth + 1)
            return off
        disc = self.word(off)
        labels = tuple(sorted({n & _U32_MAX for arm in t.arms for n in arm.labels}))
        self.spots.append(Spot("discriminant", self.base + off, int(t.default is not None), labels))
        signed = disc - (1 << 32) if disc >= 1 << 31 else disc
        arm = next((a for a in t.arms if signed in a.labels or disc in a.labels), t.default)
        if arm is None or arm.type is None:
            return off + 4
        return self.walk(arm.type, off + 4, depth + 1)


def split_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """Cut a byte stream at its length words: (whole frames, trailing bytes)."""
    out: list[bytes] = []
    pos = 0
    while len(data) - pos >= LEN_SIZE:
        length = _U32.unpack_from(data, pos)[0]
        if length < MIN_FRAME or pos + length > len(data):
            break
        out.append(data[pos : pos + length])
        pos += length
    return out, data[pos:]


def chunks(data: bytes, rng: random.Random, max_chunk: int = 64) -> list[bytes]:
    """``data`` cut into reads of 1..max_chunk bytes (any split must give the same events)."""
    out = []
    pos = 0
    while pos < len(data):
        n = rng.randint(1, max_chunk)
        out.append(data[pos : pos + n])
        pos += n
    return out


class Mutator:
    """Mutations of frames and sessions for the programs of ``schemas``."""

    def __init__(self, schemas: Sequence[Schema] = ()) -> None:
        message = protocol_schemas.load("message")
        self._fixed = {
            name: message.xtype(name)
            for name in ("xs_error", "xs_stream_hole", "xs_v1_call", "xs_v1_chunk")
        }
        # (prog, vers, proc) -> (argument type, result type), model types or None (void)
        self._procs: dict[tuple[int, int, int], tuple[m.XType | None, m.XType | None]] = {}
        self._interesting: set[int] = {0, 1, 2, 3, 4, 5, 6, 7, 0x7FFFFFFF, 0x80000000}
        for schema in (*schemas, message):
            for prog in schema.programs.values():
                self._interesting.add(prog.number)
                for vnum, vers in prog.versions.items():
                    for pnum, proc in vers.procedures.items():
                        arg = schema.xtype(proc.arg_type) if proc.arg_type else None
                        res = schema.xtype(proc.result_type) if proc.result_type else None
                        self._procs[(prog.number, vnum, pnum)] = (arg, res)

    # -- structure ---------------------------------------------------------------------------

    def body_types(self, frame: bytes) -> Iterator[m.XType]:
        """Candidate types of the frame's body, most likely first."""
        if len(frame) < MIN_FRAME:
            return
        _len, prog, vers, proc, mtype, _serial, status = _HEADER.unpack_from(frame)
        arg, res = self._procs.get((prog, vers, proc), (None, None))
        if status == 1 and mtype in (1, 3):
            yield self._fixed["xs_error"]
        if mtype == 6:
            yield self._fixed["xs_stream_hole"]
        if mtype == 0 and status == 2:
            yield self._fixed["xs_v1_call"]
        if mtype in (0, 2) and arg is not None:
            yield arg
        if mtype == 1 and status == 0:
            if res is not None:
                yield res
            yield self._fixed["xs_v1_chunk"]

    def layout(self, frame: bytes) -> list[Spot]:
        """The spots of ``frame``: its header words and the body's (first type that fits)."""
        spots = [Spot("length", 0, MAX_FRAME + LEN_SIZE)]
        if len(frame) >= MIN_FRAME:
            spots += [Spot(f"header.{w}", LEN_SIZE + 4 * i) for i, w in enumerate(HEADER_WORDS)]
        body = frame[MIN_FRAME:]
        for t in self.body_types(frame):
            walker = _Walker(body, MIN_FRAME)
            try:
                end = walker.walk(t, 0)
            except (DecodeError, RecursionError):
                continue
            if end == len(body):
                return spots + walker.spots
        return spots

    # -- one frame ---------------------------------------------------------------------------

    def _word(self, rng: random.Random, old: int, spot: Spot | None = None) -> int:
        choices = [old + 1, old - 1, 0, 1, _U32_MAX, rng.getrandbits(32)]
        choices.append(rng.choice(sorted(self._interesting)))
        if spot is not None and spot.kind == "length":
            bound = spot.limit
            choices += [bound, bound + 1, spot.remaining + 1, spot.remaining, 2 * old + 4]
        if spot is not None and spot.values:
            choices += [rng.choice(spot.values), max(spot.values) + 1, min(spot.values) - 1]
        return rng.choice(choices) & _U32_MAX

    def mutate_frame(self, frame: bytes, rng: random.Random, kind: str | None = None) -> bytes:
        """One mutation of ``frame`` (of ``kind``, else a kind that applies, at random)."""
        spots = self.layout(frame)
        available: dict[str, list[Spot]] = {k: [] for k in FRAME_MUTATIONS}
        available["length"] = [spots[0]]  # the frame's length word
        for spot in spots[1:]:
            if spot.kind.startswith("header."):
                available["header"].append(spot)
            elif spot.kind == "length":
                available["bound"].append(spot)  # a length prefix inside the body
            else:
                available[spot.kind].append(spot)
        if kind is None:
            kinds = [k for k, v in available.items() if v] + ["bytes"]
            kind = rng.choice(kinds)
        if kind == "bytes" or not available.get(kind):
            return self._mutate_bytes(frame, rng)
        spot = rng.choice(available[kind])
        buf = bytearray(frame)
        if kind == "padding":
            buf[spot.offset] = rng.randint(1, 255)
            return bytes(buf)
        if spot.offset + 4 > len(buf):
            return self._mutate_bytes(frame, rng)
        old = _U32.unpack_from(buf, spot.offset)[0]
        if kind == "flag":
            new = rng.choice([1 - old if old in (0, 1) else 0, 2, _U32_MAX])
        elif kind == "header" and spot.kind == "header.type":
            new = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, _U32_MAX])
        elif kind == "header" and spot.kind == "header.status":
            new = rng.choice([0, 1, 2, 3, _U32_MAX])
        elif kind == "length":
            new = rng.choice(
                [0, 4, 27, 28, old - 1, old + 1, old + 4, MAX_FRAME + 4, MAX_FRAME + 5, _U32_MAX]
            )
        else:
            new = self._word(rng, old, spot)
        struct.pack_into(">I", buf, spot.offset, new & _U32_MAX)
        return bytes(buf)

    def _mutate_bytes(self, frame: bytes, rng: random.Random) -> bytes:
        buf = bytearray(frame)
        op = rng.choice(["flip", "set", "insert", "delete"])
        if op == "flip" and buf:
            i = rng.randrange(len(buf) * 8)
            buf[i // 8] ^= 1 << (i % 8)
        elif op == "set" and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == "insert":
            i = rng.randint(MIN_FRAME if len(buf) >= MIN_FRAME else 0, len(buf))
            buf[i:i] = rng.randbytes(rng.choice([1, 3, 4, 8]))
        elif op == "delete" and len(buf) > MIN_FRAME:
            i = rng.randrange(MIN_FRAME, len(buf))
            del buf[i : i + rng.choice([1, 3, 4, 8])]
        if op in ("insert", "delete") and len(buf) >= LEN_SIZE and rng.random() < 0.5:
            struct.pack_into(">I", buf, 0, len(buf))  # keep framing intact: body damage only
        return bytes(buf)

    # -- sessions ----------------------------------------------------------------------------

    def mutate_session(
        self, frames: Sequence[bytes], rng: random.Random, kind: str | None = None
    ) -> list[bytes]:
        """One mutation of a list of frames (a session's frames in one direction)."""
        out = [f for f in frames if f]
        if not out:
            return [rng.randbytes(rng.randint(1, 64))]
        kind = kind or rng.choice(SESSION_MUTATIONS)
        i = rng.randrange(len(out))
        if kind == "frame":
            out[i] = self.mutate_frame(out[i], rng)
        elif kind == "reorder" and len(out) > 1:
            j = rng.randrange(len(out))
            out.insert(j, out.pop(i))
        elif kind == "duplicate":
            out.insert(rng.randint(i, len(out)), out[i])
        elif kind == "drop" and len(out) > 1:
            del out[i]
        elif kind == "truncate":
            data = b"".join(out)
            return [data[: rng.randrange(len(data))]]
        elif kind == "split" and len(out[i]) > MIN_FRAME:
            out[i : i + 1] = self._split(out[i], rng)
        else:
            out[i] = self.mutate_frame(out[i], rng)
        return out

    def _split(self, frame: bytes, rng: random.Random) -> list[bytes]:
        """Two frames with the same header, the payload cut in two (a stream chunk split in
        two is valid; a call body split in two is not)."""
        header = frame[LEN_SIZE:MIN_FRAME]
        payload = frame[MIN_FRAME:]
        cut = rng.randint(0, len(payload))
        parts = [payload[:cut], payload[cut:]]
        return [_U32.pack(MIN_FRAME + len(p)) + header + p for p in parts]

    def mutate_stream(self, data: bytes, rng: random.Random, rounds: int = 1) -> bytes:
        """Mutate a byte stream of frames ``rounds`` times (trailing bytes are kept)."""
        frames, rest = split_frames(data)
        for _ in range(rounds):
            frames = self.mutate_session(frames, rng)
        return b"".join(frames) + rest


def header_of(frame: bytes) -> tuple[int, ...] | None:
    """(length, prog, vers, proc, type, serial, status) of a frame, None if too short."""
    if len(frame) < LEN_SIZE + HEADER_SIZE:
        return None
    return tuple(_HEADER.unpack_from(frame))
