"""``strict_enums=False`` and the libtirpc-compatible ``lenient=True`` decoding (issues 10
and 16 part 0): what each accepts, what re-encoding gives back, strict staying the default."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from xdrstream.codec import DecodeError, EncodeError, Schema, compile_schema

TEXT = """
enum color { RED = 0, GREEN = 1 };
struct s { color c; color many<>; color fixed[2]; int after; };
union u switch (color k) { case RED: int r; default: void; };
typedef string nstr<>;
struct open_args { nstr *name; unsigned int flags; };
struct flags { bool b; bool bs<>; };
union ub switch (bool ok) { case TRUE: int v; case FALSE: void; };
struct text { string s<>; opaque o<>; opaque f[3]; };
struct node { int v; node *next; };
"""


def be(fmt: str, *values: object) -> bytes:
    return struct.pack(">" + fmt, *values)


@pytest.fixture(scope="module")
def strict() -> Schema:
    return compile_schema(TEXT, "lenient.x")


@pytest.fixture(scope="module")
def loose_enums() -> Schema:
    return compile_schema(TEXT, "lenient.x", strict_enums=False)


@pytest.fixture(scope="module")
def lenient() -> Schema:
    return compile_schema(TEXT, "lenient.x", lenient=True)


UNKNOWN = be("i", 7) + be("Iii", 2, 1, -5) + be("ii", 0, 9) + be("i", 3)


def test_strict_enums_is_the_default(strict: Schema) -> None:
    with pytest.raises(DecodeError, match=r"^s\.c at byte offset 0: 7 is not a member"):
        strict["s"].unpack(UNKNOWN)
    with pytest.raises(EncodeError, match="7 is not a member of enum color"):
        strict["s"].pack(strict["s"](c=7, many=[], fixed=[0, 0], after=0))


@pytest.mark.parametrize("mode", ["loose_enums", "lenient"])
def test_unknown_enum_values_are_ints_and_reencode_exactly(
    mode: str, request: pytest.FixtureRequest
) -> None:
    schema: Schema = request.getfixturevalue(mode)
    S, C = schema["s"], schema["color"]
    value = S.unpack(UNKNOWN)
    assert value.c == 7 and type(value.c) is int
    assert value.many == [C.GREEN, -5] and type(value.many[0]) is C
    assert value.fixed == [C.RED, 9] and value.after == 3
    assert S.pack(value) == UNKNOWN
    # A zero-filled fixed array of enums (libvirt's golden vector) decodes and re-encodes.
    zeros = bytes(4) + be("I", 0) + bytes(8) + bytes(4)
    assert S.pack(S.unpack(zeros)) == zeros
    U = schema["u"]
    assert U.unpack(be("i", 5)) == U(k=5, value=None)  # the default arm takes it
    assert U.pack(U(k=5)) == be("i", 5)
    with pytest.raises(EncodeError, match="does not fit in enum color"):
        S.pack(S(c=2**31, many=[], fixed=[0, 0], after=0))


GO_LIBVIRT_OPEN = be("I", 0x01000000) + be("I", 4) + b"test" + be("I", 0)


def test_optional_flag_any_nonzero_is_true_only_when_lenient(
    strict: Schema, loose_enums: Schema, lenient: Schema
) -> None:
    # go-libvirt writes CONNECT_OPEN's optional-name flag as the word 0x01000000.
    for schema in (strict, loose_enums):
        with pytest.raises(DecodeError, match=r"open_args\.name at byte offset 0: optional"):
            schema["open_args"].unpack(GO_LIBVIRT_OPEN)
    Open = lenient["open_args"]
    value = Open.unpack(GO_LIBVIRT_OPEN)
    assert value == Open(name="test", flags=0)
    assert Open.pack(value) == be("I", 1) + GO_LIBVIRT_OPEN[4:]  # re-encoded as TRUE = 1


def test_linked_list_flags_when_lenient(strict: Schema, lenient: Schema) -> None:
    data = be("iI", 1, 0xFFFFFFFF) + be("iI", 2, 0)
    with pytest.raises(DecodeError, match=r"node\.next at byte offset 4: optional"):
        strict["node"].unpack(data)
    N = lenient["node"]
    assert N.unpack(data) == N(v=1, next=N(v=2, next=None))


def test_bool_any_nonzero_is_true_when_lenient(strict: Schema, lenient: Schema) -> None:
    data = be("I", 2) + be("III", 2, 0, 0x80000000)
    with pytest.raises(DecodeError, match=r"^flags\.b at byte offset 0: bool must be 0 or 1"):
        strict["flags"].unpack(data)
    F = lenient["flags"]
    value = F.unpack(data)
    assert value == F(b=True, bs=[False, True]) and value.b is True
    assert F.pack(value) == be("I", 1) + be("III", 2, 0, 1)
    UB = lenient["ub"]
    assert UB.unpack(be("Ii", 5, -1)) == UB(ok=True, value=-1)
    with pytest.raises(DecodeError):
        strict["ub"].unpack(be("Ii", 5, -1))


def test_padding_and_utf8_when_lenient(strict: Schema, lenient: Schema) -> None:
    data = be("I", 1) + b"\xff\x01\x02\x03" + be("I", 1) + b"z\x09\0\0" + b"abc\x07"
    with pytest.raises(DecodeError, match=r"text\.s at byte offset 5: non-zero padding"):
        strict["text"].unpack(data)
    with pytest.raises(DecodeError, match=r"text\.s at byte offset 4: invalid UTF-8"):
        strict["text"].unpack(be("I", 1) + b"\xff\0\0\0" + be("I", 0) + b"abc\0")
    with pytest.raises(DecodeError, match="non-zero padding"):
        strict["text"].unpack(be("I", 1) + b"a\0\0\1" + be("I", 0) + b"abc\0")
    T = lenient["text"]
    value = T.unpack(data)
    assert value.s == "\udcff" and value.o == b"z" and value.f == b"abc"
    assert T.pack(value) == be("I", 1) + b"\xff\0\0\0" + be("I", 1) + b"z\0\0\0" + b"abc\0"


def test_strict_stays_strict_elsewhere(lenient: Schema) -> None:
    # Bounds, truncation and trailing bytes are not leniencies.
    with pytest.raises(DecodeError, match="trailing bytes"):
        lenient["flags"].unpack(be("II", 1, 0) + bytes(4))
    with pytest.raises(DecodeError, match="truncated"):
        lenient["open_args"].unpack(be("II", 1, 8) + b"ab")


def test_cli_options_reach_the_written_module(tmp_path: Path) -> None:
    source = tmp_path / "e.x"
    source.write_text("enum e { A = 1 };\nstruct p { e x; bool b; };\n", encoding="utf-8")
    module = tmp_path / "lenient_mod.py"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "xdrstream.cli",
            "compile",
            str(source),
            "--lenient",
            "-o",
            str(module),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    check = (
        "import struct, lenient_mod as m; P = m.SCHEMA['p'];"
        "print(P.unpack(struct.pack('>iI', 9, 3)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.stdout.strip() == "p(x=9, b=True)", out.stderr


NARROW = """
struct narrow { char c; unsigned char uc; short s; unsigned short us;
                short fixed[2]; unsigned char many<>; };
union by_short switch (short k) { case 1: int one; default: void; };
"""


def test_narrow_integers_keep_their_low_bits_when_lenient() -> None:
    # libtirpc's xdr_char/xdr_short decode the whole word and cast it ("*cp = i",
    # "*sp = (short) l"): out-of-range words wrap instead of failing.
    strict = compile_schema(NARROW, "narrow.x")
    lenient = compile_schema(NARROW, "narrow.x", lenient=True)
    data = be("iIiI", 0x17F, 0x1FF, -32769, 0x12345) + be("ii", 65535, 3) + be("III", 2, 256, 7)
    with pytest.raises(DecodeError, match=r"^narrow\.c at byte offset 0: 383 is outside"):
        strict["narrow"].unpack(data)
    N = lenient["narrow"]
    value = N.unpack(data)
    assert (value.c, value.uc, value.s, value.us) == (127, 255, 32767, 0x2345)
    assert value.fixed == [-1, 3] and value.many == [0, 7]
    # Re-encoding writes the C value, as libtirpc would.
    assert N.unpack(N.pack(value)) == value
    assert N.pack(value)[:4] == be("i", 127)
    # Encoding stays range-checked: a C char cannot hold 383.
    with pytest.raises(EncodeError, match="outside the range of char"):
        N.pack(N(c=383, uc=0, s=0, us=0, fixed=[0, 0], many=[]))
    # The exact (slow) path that names errors wraps too: the error is the truncation.
    with pytest.raises(DecodeError, match=r"^narrow\.many at byte offset 24: truncated"):
        N.unpack(data[:-4])
    U = lenient["by_short"]
    assert U.unpack(be("ii", 0x10001, 9)) == U(k=1, value=9)
    with pytest.raises(DecodeError):
        strict["by_short"].unpack(be("ii", 0x10001, 9))
