"""rpcgen's dialect (issue 10): C integer types, string constants, the redundant tag
typedef, ``//`` comments, namespaces, external constants, several files into one schema."""

from __future__ import annotations

import importlib.util
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from xdrstream.codec import (
    DecodeError,
    EncodeError,
    Schema,
    SchemaError,
    compile_schema,
    load_schema,
)
from xdrstream.codec.commands import parse_define


def be(fmt: str, *values: object) -> bytes:
    return struct.pack(">" + fmt, *values)


C_TYPES = """
struct ctypes {
    char c; unsigned char uc; short s; unsigned short us; long l; unsigned long ul;
};
struct carrays { char fixed[3]; char var<4>; unsigned short shorts<>; };
union cu switch (char k) { case -1: short neg; case 1: unsigned char pos; };
"""

RANGES = {
    "c": (-128, 127),
    "uc": (0, 255),
    "s": (-32768, 32767),
    "us": (0, 65535),
    "l": (-(2**31), 2**31 - 1),
    "ul": (0, 2**32 - 1),
}
FMT = {"c": "i", "uc": "I", "s": "i", "us": "I", "l": "i", "ul": "I"}


@pytest.fixture(scope="module")
def ctypes_schema() -> Schema:
    return compile_schema(C_TYPES, "ctypes.x")


def test_c_integer_types_are_full_xdr_words(ctypes_schema: Schema) -> None:
    # rpcgen's xdr_char/xdr_u_char/xdr_short/xdr_u_short/xdr_long/xdr_u_long: one 4-byte
    # word each, sign-extended for the signed types.
    T = ctypes_schema["ctypes"]
    low = T(**{k: lo for k, (lo, _) in RANGES.items()})
    high = T(**{k: hi for k, (_, hi) in RANGES.items()})
    for value, pick in ((low, 0), (high, 1)):
        expected = b"".join(be(FMT[k], RANGES[k][pick]) for k in RANGES)
        assert len(expected) == 24
        assert T.pack(value) == expected
        assert T.unpack(expected) == value
    assert T.pack(low)[:4] == b"\xff\xff\xff\x80"  # char -128: sign-extended word


@pytest.mark.parametrize("field", list(RANGES))
def test_c_integer_encode_refuses_values_out_of_range(ctypes_schema: Schema, field: str) -> None:
    T = ctypes_schema["ctypes"]
    lo, hi = RANGES[field]
    for bad in (lo - 1, hi + 1):
        values = {k: 0 for k in RANGES}
        values[field] = bad
        with pytest.raises(EncodeError) as info:
            T.pack(T(**values))
        assert info.value.path == f"ctypes.{field}"
        assert "outside the range" in info.value.reason


@pytest.mark.parametrize("field", ["c", "uc", "s", "us"])
def test_c_integer_strict_decode_refuses_values_out_of_range(
    ctypes_schema: Schema, field: str
) -> None:
    T = ctypes_schema["ctypes"]
    index = list(RANGES).index(field)
    lo, hi = RANGES[field]
    for bad in (lo - 1, hi + 1):
        words = [0] * 6
        words[index] = bad
        data = b"".join(be("i" if w < 0 else "I", w) for w in words)
        with pytest.raises(DecodeError) as info:
            T.unpack(data)
        assert info.value.path == f"ctypes.{field}"
        assert info.value.offset == 4 * index
        seen = bad if FMT[field] == "i" else bad & 0xFFFFFFFF  # the word as the type reads it
        assert f"{seen} is outside the range" in info.value.reason


def test_char_arrays_are_arrays_of_words_not_opaque(ctypes_schema: Schema) -> None:
    A = ctypes_schema["carrays"]
    value = A(fixed=[-1, 0, 127], var=[65, 66], shorts=[65535])
    expected = be("iii", -1, 0, 127) + be("Iii", 2, 65, 66) + be("II", 1, 65535)
    assert A.pack(value) == expected
    assert A.unpack(expected) == value
    with pytest.raises(EncodeError, match=r"carrays\.var\[1\]: 128 is outside the range of char"):
        A.pack(A(fixed=[0, 0, 0], var=[1, 128], shorts=[]))
    with pytest.raises(EncodeError, match=r"carrays\.fixed\[0\]"):
        A.pack(A(fixed=[-129, 0, 0], var=[], shorts=[]))
    bad_fixed = be("iii", 0, 200, 0) + be("II", 0, 0)
    with pytest.raises(DecodeError, match=r"carrays\.fixed\[1\] at byte offset 4: 200"):
        A.unpack(bad_fixed)
    bad_var = be("iii", 0, 0, 0) + be("Iii", 2, 1, -129) + be("I", 0)
    with pytest.raises(DecodeError, match=r"carrays\.var\[1\] at byte offset 20: -129"):
        A.unpack(bad_var)
    bad_shorts = be("iii", 0, 0, 0) + be("I", 0) + be("II", 1, 65536)
    with pytest.raises(DecodeError, match=r"carrays\.shorts\[0\]"):
        A.unpack(bad_shorts)


def test_char_discriminant_is_range_checked(ctypes_schema: Schema) -> None:
    U = ctypes_schema["cu"]
    assert U.pack(U(k=-1, value=-5)) == be("ii", -1, -5)
    assert U.unpack(be("iI", 1, 255)) == U(k=1, value=255)
    with pytest.raises(DecodeError, match=r"cu\.pos at byte offset 4: 256 is outside"):
        U.unpack(be("iI", 1, 256))
    with pytest.raises(DecodeError, match=r"cu\.k at byte offset 0: 300 is outside"):
        U.unpack(be("i", 300))


def test_c_integer_builtins_have_codecs(ctypes_schema: Schema) -> None:
    assert ctypes_schema.codec("unsigned char").pack(200) == be("I", 200)
    with pytest.raises(DecodeError):
        ctypes_schema.codec("short").unpack(be("i", 40000))


def test_string_constants_are_python_str() -> None:
    text = 'const HEX = "d4a0\\"x";\nconst ALIAS = HEX;\nconst N = 4;\nstruct s { int a[N]; };\n'
    schema = compile_schema(text, "key.x")
    assert schema.constants["HEX"] == 'd4a0"x'
    assert schema.constants["ALIAS"] == 'd4a0"x'
    assert schema.constants["N"] == 4
    with pytest.raises(SchemaError, match=r"^key\.x:2:21: constant 'S' is a string, not a number"):
        compile_schema('const S = "ab";\nstruct t { opaque x<S>; };\n', "key.x")
    with pytest.raises(SchemaError, match=r"^k\.x:1:11: unterminated string constant"):
        compile_schema('const S = "ab\n;', "k.x")


def test_redundant_tag_typedef_is_accepted() -> None:
    schema = compile_schema(
        "struct X { int a; };\ntypedef struct X X;\nunion U switch (int k) "
        "{ case 0: X x; };\ntypedef union U U;\n",
        "nis.x",
    )
    assert schema["X"].pack(schema["X"](a=1)) == be("i", 1)
    assert schema["U"].unpack(be("ii", 0, 2)).value == schema["X"](a=2)
    with pytest.raises(SchemaError, match=r"^nis\.x:1:1: typedef 'Y' names itself, and no 'Y'"):
        compile_schema("typedef struct Y Y;\n", "nis.x")


def test_line_comments() -> None:
    schema = compile_schema("// header\nstruct a { int x; // trailing\n};\n// end", "c.x")
    assert schema["a"].pack(schema["a"](x=3)) == be("i", 3)


def test_namespace_definitions_join_the_schema() -> None:
    text = (
        "namespace stellar {\n"
        "typedef opaque Hash[32];\n"
        "namespace inner { const N = 2; }\n"
        "struct Pair { Hash a; int b[N]; };\n"
        "}\n"
        "struct outer { stellar_ref x; };\n"
    ).replace("stellar_ref", "Pair")
    schema = compile_schema(text, "Stellar-types.x")
    assert schema.constants["N"] == 2
    assert set(schema) >= {"Hash", "Pair", "outer"}
    with pytest.raises(SchemaError, match=r"^s\.x:1:1: expected '}' closing the namespace"):
        compile_schema("namespace x {\nconst A = 1;\n", "s.x")


def test_percent_lines_stay_ignored() -> None:
    schema = compile_schema("%#include <rpc/rpc.h>\n% don't parse me\nconst A = 1;\n", "p.x")
    assert dict(schema.constants) == {"A": 1}


def test_external_constants() -> None:
    text = "struct uuid { opaque u[VIR_UUID_BUFLEN]; };\nconst OWN = 3;\n"
    schema = compile_schema(text, "virnet.x", constants={"VIR_UUID_BUFLEN": 16, "OWN": 3})
    assert schema["uuid"].pack(schema["uuid"](u=bytes(16))) == bytes(16)
    assert schema.constants["VIR_UUID_BUFLEN"] == 16
    with pytest.raises(SchemaError) as info:
        compile_schema(text, "virnet.x")
    message = str(info.value)
    assert message.startswith("virnet.x:1:24: undefined constant 'VIR_UUID_BUFLEN'")
    assert "-D VIR_UUID_BUFLEN=" in message and "constants=" in message
    with pytest.raises(SchemaError, match=r"^virnet\.x:2:1: 'OWN' is 3 here but given as 4"):
        compile_schema(text, "virnet.x", constants={"VIR_UUID_BUFLEN": 16, "OWN": 4})


def test_identical_redefinitions_are_accepted_different_ones_name_both_places() -> None:
    a = ("a.x", "const N = 2;\ntypedef opaque nfs_fh4<N>;\nenum e { E1 = 1 };\n")
    b = ("b.x", "typedef opaque nfs_fh4<N>;\n\nconst N = 2;\nenum e { E1 = 1 };\n")
    schema = compile_schema([a, b])
    assert schema.codec("nfs_fh4").pack(b"x") == be("I", 1) + b"x\0\0\0"
    c = ("c.x", "\n\ntypedef opaque nfs_fh4<3>;\n")
    with pytest.raises(SchemaError) as info:
        compile_schema([a, c])
    assert str(info.value) == (
        "c.x:3:1: 'nfs_fh4' is already defined differently (as a type at a.x:2:1)"
    )
    d = ("d.x", "const N = 3;\n")
    with pytest.raises(
        SchemaError,
        match=r"^d\.x:1:1: 'N' is already defined differently "
        r"\(as a constant at a\.x:1:1\)",
    ):
        compile_schema([a, d])


def test_unknown_type_says_what_rpcgen_would_do() -> None:
    with pytest.raises(SchemaError) as info:
        compile_schema("struct s {\n  gf_iatt stat;\n};\n", "glusterfs.x")
    message = str(info.value)
    assert message.startswith("glusterfs.x:2:3: undefined type 'gf_iatt': rpcgen would emit")
    assert "xdr_gf_iatt()" in message
    assert "compile it together with the file that defines it" in message


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_several_files_one_schema_in_order(tmp_path: Path) -> None:
    remote = write(tmp_path / "remote.x", "typedef string remote_nonnull_string<64>;\n")
    qemu = write(
        tmp_path / "qemu.x",
        "struct qemu_args {\n  remote_nonnull_string cmd;\n  unsigned int flags;\n};\n",
    )
    schema = load_schema([remote, qemu])
    Q = schema["qemu_args"]
    assert Q.pack(Q(cmd="ab", flags=1)) == be("I", 2) + b"ab\0\0" + be("I", 1)
    assert str(remote) in schema.filename and str(qemu) in schema.filename
    bad = write(tmp_path / "lxc.x", "const A = 1;\n\nstruct lxc { missing_t m; };\n")
    with pytest.raises(SchemaError, match=re.escape(f"{bad}:3:14: undefined type 'missing_t'")):
        load_schema([remote, qemu, bad])
    # Forward references across files resolve, as within one file.
    assert load_schema([qemu, remote])["qemu_args"].unpack(Q.pack(Q(cmd="", flags=2))).flags == 2


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xdrstream.cli", "compile", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_defines_several_files_and_the_written_module(tmp_path: Path) -> None:
    a = write(tmp_path / "a.x", "typedef opaque uuid[VIR_UUID_BUFLEN];\nconst LABEL = NAME;\n")
    b = write(tmp_path / "b.x", "struct dom { uuid id; string name<MAX>; };\n")
    out = tmp_path / "mod.py"
    result = run_cli(
        str(a),
        str(b),
        "-D",
        "VIR_UUID_BUFLEN=0x10",
        "-D",
        "MAX=8",
        "-D",
        'NAME="x"',
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    spec = importlib.util.spec_from_file_location("dialect_mod", out)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    schema = module.SCHEMA
    D = schema["dom"]
    assert D.pack(D(id=bytes(16), name="n")) == bytes(16) + be("I", 1) + b"n\0\0\0"
    assert schema.constants["LABEL"] == "x"
    result = run_cli(str(a), str(b), "-D", "VIR_UUID_BUFLEN=16")
    assert result.returncode == 1
    assert f"{b}:1:35: undefined constant 'MAX'" in result.stderr
    result = run_cli(str(a), "-D", "N=abc")
    assert result.returncode == 2 and 'integer or a "string"' in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [("A", ("A", 1)), ("A=-3", ("A", -3)), ("A=010", ("A", 8)), ('A="s p"', ("A", "s p"))],
)
def test_parse_define(text: str, expected: tuple[str, object]) -> None:
    assert parse_define(text) == expected


@pytest.mark.parametrize("text", ["1A=2", "A=1 2", "A=B", "A="])
def test_parse_define_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_define(text)
