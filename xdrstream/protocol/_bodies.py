"""Hand-written XDR for the message layer's fixed bodies (spec.md §4.5, §7.1.3, §7.2.1).

These bodies sit on the hot path (every V1 chunk, every hole) or must decode even when no
program schema is loaded (errors), so they are packed with :mod:`struct` like the header.
``tests/protocol/test_bodies.py`` checks them byte for byte against the codec compiled from
``schemas/message.x``.  Decoders are strict (zero padding, booleans 0/1, lengths checked
against the remaining input and limits) and raise :class:`RemoteProtocolError` with the
byte offset inside the payload.
"""

from __future__ import annotations

import struct

from xdrstream.protocol.errors import RemoteProtocolError
from xdrstream.protocol.events import RemoteError
from xdrstream.protocol.framing import STRING_MAX

V1_WINDOW = 8
V1_CHUNK_MAX = 262144
UUID_SIZE = 16


class V1Op:
    DATA = 0
    HOLE = 1
    FINISH = 2
    ABORT = 3
    READ = 4


_I = struct.Struct(">i")
_U = struct.Struct(">I")
_UU = struct.Struct(">II")
_HOLE = struct.Struct(">qI")
_V1_HOLE = struct.Struct(">IIqI")
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")


def pad(n: int) -> bytes:
    return _PAD[n & 3]


class Reader:
    """Sequential strict XDR reader over one payload."""

    __slots__ = ("data", "pos", "section")

    def __init__(self, data: bytes | memoryview, section: str) -> None:
        self.data = data
        self.pos = 0
        self.section = section

    def fail(self, what: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"{what} (payload byte {self.pos})", section=self.section)

    def need(self, n: int, what: str) -> None:
        if len(self.data) - self.pos < n:
            raise self.fail(f"{what}: needs {n} bytes, {len(self.data) - self.pos} left")

    def i32(self, what: str) -> int:
        self.need(4, what)
        (value,) = _I.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(value)

    def u32(self, what: str) -> int:
        self.need(4, what)
        (value,) = _U.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(value)

    def flag(self, what: str) -> bool:
        value = self.u32(what)
        if value > 1:
            self.pos -= 4
            raise self.fail(f"{what}: boolean {value} is neither 0 nor 1")
        return value == 1

    def fixed(self, n: int, what: str) -> bytes:
        self.need(n + (-n & 3), what)
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        self._padding(n, what)
        return out

    def _padding(self, n: int, what: str) -> None:
        k = -n & 3
        if k and any(self.data[self.pos : self.pos + k]):
            raise self.fail(f"{what}: non-zero padding")
        self.pos += k

    def var_view(self, limit: int, what: str) -> memoryview | bytes:
        n = self.u32(f"{what} length")
        if n > limit:
            self.pos -= 4
            raise self.fail(f"{what}: length {n} exceeds the limit {limit}")
        self.need(n + (-n & 3), what)
        view = self.data[self.pos : self.pos + n]
        self.pos += n
        self._padding(n, what)
        return view

    def string(self, what: str) -> str:
        start = self.pos
        raw = bytes(self.var_view(STRING_MAX, what))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.pos = start
            raise self.fail(f"{what}: not UTF-8") from None

    def opt_string(self, what: str) -> str | None:
        return self.string(what) if self.flag(f"{what} presence") else None

    def hole(self) -> tuple[int, int]:
        self.need(12, "stream hole")
        length, flags = _HOLE.unpack_from(self.data, self.pos)
        self.pos += 12
        return int(length), int(flags)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise self.fail(f"{len(self.data) - self.pos} unexpected trailing bytes")


def _pack_string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return _U.pack(len(raw)) + raw + pad(len(raw))


def _pack_opt_string(value: str | None) -> bytes:
    return _U.pack(0) if value is None else _U.pack(1) + _pack_string(value)


def pack_error(error: RemoteError) -> bytes:
    parts = [_I.pack(error.code), _I.pack(error.domain), _pack_opt_string(error.message)]
    parts.append(_I.pack(error.level))
    if error.dom is None:
        parts.append(_U.pack(0))
    else:
        name, uuid, dom_id = error.dom
        parts += [_U.pack(1), _pack_string(name), bytes(uuid), _I.pack(dom_id)]
    parts += [_pack_opt_string(s) for s in (error.str1, error.str2, error.str3)]
    parts += [_I.pack(error.int1), _I.pack(error.int2)]
    if error.net is None:
        parts.append(_U.pack(0))
    else:
        name, uuid = error.net
        parts += [_U.pack(1), _pack_string(name), bytes(uuid)]
    return b"".join(parts)


def check_error(error: RemoteError) -> str | None:
    """Why ``error`` cannot be encoded, or None."""
    ints = [("code", error.code), ("domain", error.domain), ("level", error.level)]
    ints += [("int1", error.int1), ("int2", error.int2)]
    texts = [error.message, error.str1, error.str2, error.str3]
    for ref in (error.dom, error.net):
        if ref is not None:
            if len(ref[1]) != UUID_SIZE:
                return f"uuid must be {UUID_SIZE} bytes"
            texts.append(ref[0])
    if error.dom is not None:
        ints.append(("dom id", error.dom[2]))
    for label, value in ints:
        if not isinstance(value, int) or not -(2**31) <= value < 2**31:
            return f"{label} {value!r} is not a 32-bit int"
    for text in texts:
        if text is None:
            continue
        if not isinstance(text, str):
            return f"{text!r} is not a str"
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            return f"{text!r} is not encodable as UTF-8"
        if len(raw) > STRING_MAX:
            return f"string longer than {STRING_MAX} bytes"
    return None


def unpack_error(data: bytes | memoryview) -> RemoteError:
    r = Reader(data, "§4.5")
    code = r.i32("error code")
    domain = r.i32("error domain")
    message = r.opt_string("error message")
    level = r.i32("error level")
    dom = None
    if r.flag("error dom presence"):
        dom = (r.string("error dom name"), r.fixed(UUID_SIZE, "error dom uuid"), r.i32("dom id"))
    strs = [r.opt_string(f"error str{i}") for i in (1, 2, 3)]
    int1 = r.i32("error int1")
    int2 = r.i32("error int2")
    net = None
    if r.flag("error net presence"):
        net = (r.string("error net name"), r.fixed(UUID_SIZE, "error net uuid"))
    r.end()
    return RemoteError(
        code, domain, message, level, strs[0], strs[1], strs[2], int1, int2, dom, net
    )


def pack_hole(length: int, flags: int) -> bytes:
    return _HOLE.pack(length, flags)


def unpack_hole(data: bytes | memoryview, section: str = "§7.1.3") -> tuple[int, int]:
    r = Reader(data, section)
    length, flags = r.hole()
    r.end()
    if length < 0 or flags != 0:
        raise RemoteProtocolError(
            f"stream hole length {length} flags {flags}: length must be >= 0, flags 0",
            section=section,
        )
    return length, flags


# V1 stream calls: xs_v1_call {unsigned stream; xs_v1_request request}.
def v1_data_prefix(stream: int, size: int) -> bytes:
    """Bytes before the data of a V1 DATA call; the data and ``pad(size)`` follow."""
    return struct.pack(">III", stream, V1Op.DATA, size)


def pack_v1_call(stream: int, op: int, arg: int | tuple[int, int] | None = None) -> bytes:
    if op == V1Op.HOLE:
        assert isinstance(arg, tuple)
        return _V1_HOLE.pack(stream, op, arg[0], arg[1])
    if op == V1Op.READ:
        assert isinstance(arg, int)
        return struct.pack(">III", stream, op, arg)
    return _UU.pack(stream, op)


V1CallArg = memoryview | bytes | int | tuple[int, int] | None
"""A V1 stream call's argument: data, (length, flags), max_bytes or None."""


def unpack_v1_call(data: bytes | memoryview) -> tuple[int, int, V1CallArg]:
    """(stream, op, argument) where argument is data, (length, flags), max_bytes or None."""
    r = Reader(data, "§7.2.1")
    stream = r.u32("V1 stream")
    op = r.u32("V1 op")
    arg: V1CallArg
    if op == V1Op.DATA:
        arg = r.var_view(V1_CHUNK_MAX, "V1 data")
    elif op == V1Op.HOLE:
        start = r.pos
        r.need(12, "V1 hole")
        r.pos += 12
        arg = unpack_hole(data[start : r.pos], "§7.2.1")
    elif op == V1Op.READ:
        arg = r.u32("V1 read max_bytes")
        if not 1 <= arg <= V1_CHUNK_MAX:
            raise r.fail(f"V1 read max_bytes {arg} is not in 1..{V1_CHUNK_MAX}")
    elif op in (V1Op.FINISH, V1Op.ABORT):
        arg = None
    else:
        r.pos -= 4
        raise r.fail(f"V1 op {op} is not an xs_v1_op")
    r.end()
    return stream, op, arg


# Reply to a V1 READ: xs_v1_chunk (DATA / HOLE / FINISH = end of data).
def v1_chunk_data_prefix(size: int) -> bytes:
    return _UU.pack(V1Op.DATA, size)


def pack_v1_chunk(op: int, hole: tuple[int, int] | None = None) -> bytes:
    if op == V1Op.HOLE:
        assert hole is not None
        return _U.pack(op) + _HOLE.pack(*hole)
    return _U.pack(op)


def unpack_v1_chunk(
    data: bytes | memoryview,
) -> tuple[int, memoryview | bytes | tuple[int, int] | None]:
    r = Reader(data, "§7.2.1")
    op = r.u32("V1 chunk op")
    arg: memoryview | bytes | tuple[int, int] | None
    if op == V1Op.DATA:
        arg = r.var_view(V1_CHUNK_MAX, "V1 chunk data")
    elif op == V1Op.HOLE:
        start = r.pos
        r.need(12, "V1 chunk hole")
        r.pos += 12
        arg = unpack_hole(data[start : r.pos], "§7.2.1")
    elif op == V1Op.FINISH:
        arg = None
    else:
        r.pos -= 4
        raise r.fail(f"V1 chunk op {op} is not DATA, HOLE or FINISH")
    r.end()
    return op, arg
