"""Generated codecs: exact RFC 4506 bytes, value mapping, naming, tracebacks, the CLI."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import linecache
import math
import os
import struct
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from xdrstream.codec import DecodeError, EncodeError, Schema, compile_schema, load_schema

BASIC = """
const MAXNAME = 8;
enum color { RED = 0, GREEN = 1, BLUE = 7, NEG = -2 };
struct point { int x; int y; };
struct scalars {
    int i; unsigned int u; hyper h; unsigned hyper uh; bool b; float f; double d; color c;
};
struct blobs { opaque fixed3[3]; opaque var<>; string name<MAXNAME>; };
struct arrays { int fixed[2]; unsigned hyper var<4>; point points<>; bool flags<>; };
struct node { int value; node *next; };
typedef node *list;
union result switch (color status) {
case RED: int code;
case GREEN: case BLUE: string message<>;
default: void;
};
union opt switch (bool present) { case TRUE: point p; case FALSE: void; };
typedef string name_t<MAXNAME>;
typedef int ints<>;
typedef opaque uuid[16];
typedef point point_alias;
"""


@pytest.fixture(scope="module")
def schema() -> Schema:
    return compile_schema(BASIC, filename="basic.x")


def be(fmt: str, *values: object) -> bytes:
    return struct.pack(">" + fmt, *values)


def test_struct_of_scalars_exact_bytes(schema: Schema) -> None:
    S, C = schema["scalars"], schema["color"]
    value = S(i=-1, u=0xFFFFFFFE, h=-(2**40), uh=2**64 - 1, b=True, f=1.5, d=-0.25, c=C.BLUE)
    expected = be("iIqQIfdi", -1, 0xFFFFFFFE, -(2**40), 2**64 - 1, 1, 1.5, -0.25, 7)
    assert S.pack(value) == expected
    assert S.unpack(expected) == value


def test_opaque_and_string_padding_exact_bytes(schema: Schema) -> None:
    B = schema["blobs"]
    value = B(fixed3=b"abc", var=b"\x01\x02\x03\x04\x05", name="héllo")
    name = "héllo".encode()  # 6 bytes -> 2 bytes of padding
    expected = b"abc\0" + be("I", 5) + b"\x01\x02\x03\x04\x05\0\0\0" + be("I", 6) + name + b"\0\0"
    assert B.pack(value) == expected
    assert B.unpack(expected) == value


def test_arrays_exact_bytes(schema: Schema) -> None:
    A, P = schema["arrays"], schema["point"]
    value = A(fixed=[1, -2], var=[3, 4, 5], points=[P(x=6, y=7)], flags=[True, False])
    expected = be("ii", 1, -2) + be("IQQQ", 3, 3, 4, 5) + be("Iii", 1, 6, 7) + be("III", 2, 1, 0)
    assert A.pack(value) == expected
    assert A.unpack(expected) == value
    # Tuples are accepted for arrays when encoding; decoding gives lists.
    assert A.pack(A(fixed=(1, -2), var=(3, 4, 5), points=(P(x=6, y=7),), flags=(1, 0))) == expected


def test_optional_and_linked_list_exact_bytes(schema: Schema) -> None:
    N, L = schema["node"], schema["list"]
    chain = N(value=1, next=N(value=2, next=None))
    expected = be("iIiI", 1, 1, 2, 0)
    assert N.pack(chain) == expected
    assert N.unpack(expected) == chain
    assert L.pack(None) == be("I", 0)
    assert L.pack(chain) == be("I", 1) + expected
    assert L.unpack(be("I", 1) + expected) == chain


def test_unions_exact_bytes(schema: Schema) -> None:
    R, C, Opt, P = schema["result"], schema["color"], schema["opt"], schema["point"]
    assert R.pack(R(status=C.RED, value=-5)) == be("ii", 0, -5)
    assert R.pack(R(status=C.BLUE, value="ok")) == be("iI", 7, 2) + b"ok\0\0"
    assert R.pack(R(status=C.NEG)) == be("i", -2)  # default arm: void
    assert R.unpack(be("iI", 1, 1) + b"x\0\0\0") == R(status=C.GREEN, value="x")
    decoded = R.unpack(be("i", -2))
    assert decoded.status is C.NEG and decoded.value is None
    assert Opt.pack(Opt(present=True, value=P(x=1, y=2))) == be("Iii", 1, 1, 2)
    assert Opt.unpack(be("I", 0)) == Opt(present=False, value=None)
    # Generic code reads any union's discriminant as ``.discriminant``.
    assert decoded.discriminant is C.NEG
    assert Opt(present=True, value=None).discriminant is True
    # The union class is documented in its docstring.
    assert "'value' the arm's value" in (R.__doc__ or "")
    assert "default: void" in (R.__doc__ or "")


def test_typedef_codecs_and_builtins(schema: Schema) -> None:
    assert schema["name_t"].pack("abc") == be("I", 3) + b"abc\0"
    assert schema["ints"].unpack(be("Iii", 2, 5, 6)) == [5, 6]
    assert schema["uuid"].pack(bytes(range(16))) == bytes(range(16))
    assert schema.codec("unsigned hyper").pack(2**64 - 1) == b"\xff" * 8
    assert schema.codec("bool").unpack(be("I", 1)) is True
    assert schema.codec("string").unpack(be("I", 1) + b"z\0\0\0") == "z"
    assert schema.codec("opaque").pack(b"") == be("I", 0)
    assert schema.codec("double").unpack(be("d", 2.5)) == 2.5
    assert schema.codec("point") is not None and schema.codec("point").pack(
        schema["point"](x=1, y=2)
    ) == be("ii", 1, 2)
    with pytest.raises(KeyError):
        schema["int"]  # built-ins only via codec()
    with pytest.raises(KeyError):
        schema["nope"]


def test_typedef_of_a_struct_is_its_class(schema: Schema) -> None:
    P = schema["point"]
    assert schema["point_alias"] is P
    # Errors through the class keep the struct's own name; the alias codec uses the alias.
    with pytest.raises(DecodeError) as info:
        P.unpack(b"")
    assert info.value.path == "point.x"
    with pytest.raises(DecodeError) as info:
        schema.codec("point_alias").unpack(b"\0\0\0\0")
    assert info.value.path == "point_alias.y"


def test_types_lead_back_to_their_schema_and_x_name(schema: Schema) -> None:
    for name in ("point", "scalars", "node", "color", "result", "opt"):
        cls = schema[name]
        assert cls.__xdr_schema__ is schema and cls.__xdr_name__ == name
        assert schema.xtype(cls.__xdr_name__) is schema.model.types[name]
    # A typedef naming a struct is the struct's class: it leads to the struct.
    assert schema["point_alias"].__xdr_name__ == "point"
    for name in ("name_t", "ints", "uuid", "list"):
        codec = schema[name]
        assert codec.__xdr_schema__ is schema and codec.__xdr_name__ == name
    builtin = schema.codec("unsigned hyper")
    assert (builtin.__xdr_schema__, builtin.__xdr_name__) == (schema, "unsigned hyper")
    # Inline types and .x names that look like the attributes do not get in the way.
    other = compile_schema(
        "struct outer { struct { int __xdr_name__; } inner; int __xdr_schema__; };"
    )
    outer, inner = other["outer"], other["outer.inner"]
    assert (outer.__xdr_schema__, outer.__xdr_name__) == (other, "outer")
    assert (inner.__xdr_schema__, inner.__xdr_name__) == (other, "outer.inner")
    assert [f.name for f in dataclasses.fields(outer)] == ["inner", "x__xdr_schema__"]
    value = outer(inner=inner(x__xdr_name__=1), x__xdr_schema__=2)
    assert outer.unpack(outer.pack(value)) == value


def test_value_classes(schema: Schema) -> None:
    P, C, R = schema["point"], schema["color"], schema["result"]
    assert dataclasses.is_dataclass(P) and P.__slots__ == ("x", "y")
    assert P(x=1, y=2) == P(x=1, y=2) != P(x=2, y=1)
    assert P.__name__ == "point" and repr(P(x=1, y=2)) == "point(x=1, y=2)"
    assert issubclass(C, enum.IntEnum) and C.BLUE == 7 and C(7) is C.BLUE
    assert schema.constants["BLUE"] == 7 and schema.constants["MAXNAME"] == 8
    # Enum values decode to members; encode takes members or their int values.
    assert schema["scalars"].unpack(bytes(28) + be("fdi", 0, 0, -2)).c is C.NEG
    assert R.pack(R(status=7, value="")) == R.pack(R(status=C.BLUE, value=""))


def test_a_value_equals_itself_as_a_dataclass_does() -> None:
    """Equality compares field tuples (identity first, as @dataclass): a NaN field keeps a
    value equal to itself, whether the struct has one field or two."""
    schema = compile_schema("struct one { double d; }; struct two { double a; double b; };")
    one, two = schema["one"](d=math.nan), schema["two"](a=math.nan, b=1.0)
    assert one == one and two == two
    assert schema["one"](d=1.0) == schema["one"](d=1.0) != schema["one"](d=2.0)


def test_fused_struct_runs_in_generated_source(schema: Schema) -> None:
    source = schema.source
    # The 8 scalars of ``scalars`` are one precompiled Struct, packed and unpacked at once.
    assert "_struct.Struct('>iIqQIfdi')" in source
    start = source.index("def u_scalars")
    body = source[start : source.index("\ndef ", start + 1)]
    assert body.count("unpack_from") == 1


def test_sanitised_identifiers() -> None:
    schema = compile_schema(
        """
        enum kind { name = 1, value = 2, None = 3, _private = 4 };
        struct weird { int class; int from; int pack; int __init__; int unpack_from;
                       int match; int _x; kind k; };
        union u switch (int value) { case 1: int pack; default: void; };
        """
    )
    W, K, U = schema["weird"], schema["kind"], schema["u"]
    fields = [f.name for f in dataclasses.fields(W)]
    assert fields == ["class_", "from_", "pack_", "x__init__", "unpack_from_", "match", "x_x", "k"]
    value = W(class_=1, from_=2, pack_=3, x__init__=4, unpack_from_=5, match=6, x_x=7, k=K.None_)
    assert W.unpack(W.pack(value)) == value
    assert W.pack(value) == be("iiiiiiii", 1, 2, 3, 4, 5, 6, 7, 3)
    assert [member.name for member in K] == ["name_", "value_", "None_", "x_private"]
    assert schema.constants["None"] == 3  # constants keep the .x names
    assert U.unpack(U.pack(U(value_=1, value=9))) == U(value_=1, value=9)


def test_hostile_names_never_reach_code_unquoted() -> None:
    # Names are identifiers by construction; strings in the schema only appear via repr().
    schema = compile_schema("/* ''' \"\"\" \\ */ struct s { int a; };", filename="we'ird\"\n.x")
    assert schema["s"].pack(schema["s"](a=1)) == be("i", 1)
    assert schema.filename == "we'ird\"\n.x"


def test_generated_source_is_in_linecache_and_tracebacks(schema: Schema) -> None:
    pack_fn = schema._ns["p_point"]
    filename = pack_fn.__code__.co_filename
    assert filename.startswith("<xdrstream generated ") and filename.endswith("basic.x>")
    lines = linecache.getlines(filename)
    assert "".join(lines) == schema.source
    # A traceback through generated code shows the generated line.
    try:
        pack_fn(object(), [])
    except AttributeError:
        text = traceback.format_exc()
    assert filename in text
    assert "_S" in text and ".pack(v.x, v.y)" in text


def test_functions_compile_on_first_call_and_keep_their_lines() -> None:
    # compile_schema compiles each generated function at its first call (most of a big
    # schema's compile time): the stub taken before then must run the real code, and a
    # traceback from a function far down the module must show its own generated line.
    text = "".join(f"struct s{i} {{ int a; hyper b{i}; }};\n" for i in range(30))
    schema = compile_schema(text, filename="lazy.x")
    pack_fn = schema._ns["p_s29"]
    assert pack_fn.__kwdefaults__ is not None  # not compiled yet
    value = schema["s29"](a=1, b29=2)
    out: list[bytes] = []
    pack_fn(value, out)
    assert b"".join(out) == struct.pack(">iq", 1, 2) == schema["s29"].pack(value)
    assert schema._ns["p_s29"] is pack_fn and pack_fn.__kwdefaults__ is None
    try:
        schema._ns["p_s28"](object(), [])
    except AttributeError:
        frame = traceback.extract_tb(sys.exc_info()[2])[-1]
    line = linecache.getline(frame.filename, frame.lineno)
    assert "v.b28" in line and line == schema.source.splitlines(True)[frame.lineno - 1]
    assert frame.name == "p_s28"
    assert schema["s0"].unpack(struct.pack(">iq", 3, 4)) == schema["s0"](a=3, b0=4)


def test_two_compilations_do_not_share_linecache_entries() -> None:
    a = compile_schema("struct s { int a; };", filename="same.x")
    b = compile_schema("struct s { hyper a; int b; };", filename="same.x")
    fa = a._ns["p_s"].__code__.co_filename
    fb = b._ns["p_s"].__code__.co_filename
    assert fa != fb
    assert "".join(linecache.getlines(fa)) == a.source
    assert "".join(linecache.getlines(fb)) == b.source


def test_unpack_accepts_any_bytes_like_and_returns_bytes(schema: Schema) -> None:
    B = schema["blobs"]
    data = B.pack(B(fixed3=b"xyz", var=b"12345", name="n"))
    for buffer in (bytearray(data), memoryview(data)):
        value = B.unpack(buffer)
        assert type(value.var) is bytes and type(value.fixed3) is bytes
    value, end = B.unpack_from(b"\0" * 4 + data + b"rest", 4)
    assert end == 4 + len(data) and value.name == "n"


def test_zero_copy_opaque_of_256_kib() -> None:
    schema = compile_schema("struct chunk { unsigned hyper offset; opaque data<>; };")
    C = schema["chunk"]
    payload = bytes(range(256)) * 1024  # 256 KiB
    data = bytearray(C.pack(C(offset=7, data=payload)))
    value = C.unpack(data, zero_copy=True)
    assert isinstance(value.data, memoryview)
    assert value.data.obj is data  # a view of the caller's buffer: nothing was copied
    assert value.data.nbytes == 262144 and value.data == payload
    data[12] ^= 0xFF  # the view sees changes to the underlying buffer
    assert value.data[0] == payload[0] ^ 0xFF
    copied = C.unpack(bytes(data))
    assert type(copied.data) is bytes
    view, end = C.unpack_from(data, 0, zero_copy=True)
    assert view.data.obj is data and end == len(data)


def test_recursion_depth_is_limited_without_recursion_error() -> None:
    # True nesting: the self-optional is not the last member, so this is no linked list
    # (those are coded in a loop: tests/codec/test_lists.py).
    text = "struct node { node *next; int value; };"
    schema = compile_schema(text, max_depth=50)
    N = schema["node"]

    def chain(n: int) -> bytes:
        return be("I", 1) * (n - 1) + be("I", 0) + be("i", 0) * n

    assert N.unpack(chain(50)).value == 0
    with pytest.raises(DecodeError, match="nesting too deep") as info:
        N.unpack(chain(51))
    assert info.value.offset == 50 * 4
    assert info.value.path == "node" + ".next" * 50
    deep = None
    for i in range(51):
        deep = N(next=deep, value=i)
    with pytest.raises(EncodeError, match="nesting too deep"):
        N.pack(deep)
    # Far beyond Python's recursion limit: still a DecodeError, and fast to reject.
    default = compile_schema(text)
    with pytest.raises(DecodeError, match="nesting too deep"):
        default["node"].unpack(chain(5000))


def test_load_schema_caches_by_path_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "c.x"
    path.write_text("struct s { int a; };")
    first = load_schema(path)
    assert load_schema(path) is first
    assert first.filename == str(path)
    path.write_text("struct s { int a; int b; };")
    os.utime(path, ns=(1, 10**18))
    second = load_schema(path)
    assert second is not first and len(second["s"].pack(second["s"](a=1, b=2))) == 8


def test_compile_cli_writes_an_importable_module(tmp_path: Path, schema: Schema) -> None:
    source = tmp_path / "basic.x"
    source.write_text(BASIC)
    out = tmp_path / "basic_xdr.py"
    result = subprocess.run(
        [sys.executable, "-m", "xdrstream.cli", "compile", str(source), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("basic_xdr")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("basic_xdr", None)
    mod_schema = module.SCHEMA
    assert out.read_text() == mod_schema.source
    P, MP = schema["point"], mod_schema["point"]
    assert MP.pack(MP(x=3, y=-4)) == P.pack(P(x=3, y=-4)) == be("ii", 3, -4)
    R, MR = schema["result"], mod_schema["result"]
    assert MR.pack(MR(status=7, value="hi")) == R.pack(R(status=7, value="hi"))
    assert dict(mod_schema.constants) == dict(schema.constants)
    assert (MP.__xdr_schema__, MP.__xdr_name__) == (mod_schema, "point")
    # Errors in the standalone module are diagnosed like in-process ones.
    with pytest.raises(DecodeError) as info:
        MR.unpack(be("iI", 7, 9) + b"abc")
    assert (info.value.path, info.value.offset) == ("result.message", 8)


def test_compile_cli_reports_schema_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.x"
    bad.write_text("struct s {\n  int x\n};\n")
    result = subprocess.run(
        [sys.executable, "-m", "xdrstream.cli", "compile", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"{bad}:3:1: expected ';', found '}}'" in result.stderr
    ok = tmp_path / "ok.x"
    ok.write_text("struct s { int x; };")
    result = subprocess.run(
        [sys.executable, "-m", "xdrstream.cli", "compile", str(ok)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "SCHEMA = _rt.build_schema(globals())" in result.stdout
